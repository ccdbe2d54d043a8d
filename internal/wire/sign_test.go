package wire_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/imcallback/callback/internal/wire"
)

// TestAppendSignature checks the signature against one computed here
// from the specification: "v1," + base64(HMAC-SHA256(key, id.ts.body)).
func TestAppendSignature(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	id, ts, body := "msg_1", "1669872112", []byte(`{"a":1}`)
	spec := hmac.New(sha256.New, key)
	spec.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(spec.Sum(nil))

	head := wire.AppendSignedHead(nil, id, ts)
	assert.Equal(t, id+"."+ts+".", string(head))
	mac := wire.NewMAC(key)
	mac.Write([]byte("left over from an earlier use"))
	got := wire.AppendSignature([]byte("v1,other "), mac, head, body)
	assert.Equal(t, "v1,other "+want, string(got), "appended after what b held, mac reset")
	assert.Len(t, want, wire.SignatureLen)

	b := make([]byte, 0, wire.SignatureScratch)
	allocs := testing.AllocsPerRun(100, func() { b = wire.AppendSignature(b[:0], mac, head, body) })
	assert.Zero(t, allocs, "no allocation with SignatureScratch bytes of room")
	assert.Equal(t, want, string(b))
}

// TestAppendTencentSign checks Tencent's documented example.
func TestAppendTencentSign(t *testing.T) {
	got := wire.AppendTencentSign([]byte("Sign="), "xxxxyyyy", "1669872112")
	assert.Equal(t, "Sign=17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061", string(got))
	assert.Len(t, got, len("Sign=")+wire.TencentSignLen)
}

func TestWebhookHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("svix-id", "s1")
	h.Set("svix-timestamp", "2")
	h.Set("svix-signature", "v1,x")
	id, ts, sigs := wire.WebhookHeaders(h)
	assert.Equal(t, []string{"s1", "2", "v1,x"}, []string{id, ts, sigs}, "Svix's headers when there are no webhook-* ones")
	h.Set("webhook-id", "w1")
	id, ts, sigs = wire.WebhookHeaders(h)
	assert.Equal(t, []string{"w1", "", ""}, []string{id, ts, sigs}, "webhook-* headers win, even incomplete")
}

func TestAddress(t *testing.T) {
	q := map[string][]string{"appId": {"1"}, "command": {"c"}, "SdkAppid": {"2"}, "CallbackCommand": {"C"},
		"ClientIP": {"10.0.0.1"}, "OptPlatform": {"iOS"}}
	app, cmd, ip, platform := wire.Address(false, q)
	assert.Equal(t, []string{"1", "c", "", ""}, []string{app, cmd, ip, platform})
	app, cmd, ip, platform = wire.Address(true, q)
	assert.Equal(t, []string{"2", "C", "10.0.0.1", "iOS"}, []string{app, cmd, ip, platform})
}

package callback_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
)

// Standard Webhooks secrets for tests: 32-byte keys.
var (
	secretA = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	secretB = "whsec_" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
)

// verifyWith returns an App backend handler that checks each request with
// the Standard Webhooks reference verifier, keyed with each of secrets in
// turn, and counts the requests every one of them accepted.
func verifyWith(t *testing.T, ok *atomic.Int64, secrets ...string) http.HandlerFunc {
	t.Helper()
	var hooks []*standardwebhooks.Webhook
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(t, err)
		hooks = append(hooks, wh)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		assert.NoError(t, err)
		for i, wh := range hooks {
			if err := wh.Verify(body, r.Header); err != nil {
				t.Errorf("reference verifier with secret %d: got %v, want nil", i, err)
				http.Error(w, "bad signature", http.StatusUnauthorized)
				return
			}
		}
		ok.Add(1)
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
	}
}

func TestSignaturesVerifyWithReferenceVerifier(t *testing.T) {
	tests := []struct {
		name   string
		secret string
		verify []string // each must accept every request
		sigs   int      // signatures per request
	}{
		{"one key", secretA, []string{secretA}, 1},
		{"rotation: old and new keys", secretA + " " + secretB, []string{secretA, secretB}, 2},
		{"extra spaces", "  " + secretB + "\t ", []string{secretB}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ok atomic.Int64
			b := newBackend(t, verifyWith(t, &ok, tt.verify...))
			d, _ := newDispatcher(t, callback.Config{URL: b.URL, Secret: tt.secret})

			body := []byte(`{"from":"alice","to":"bob","text":"héllo \u00e9 <&>"}`)
			r := d.Before(context.Background(), 7, command.MessageSendBefore, body)
			require.NoError(t, r.Err)
			require.NoError(t, d.After(context.Background(), 7, command.MessageSendAfter, body))
			require.NoError(t, d.Close(context.Background()))

			assert.Equal(t, int64(2), ok.Load(), "requests the reference verifier accepted")
			for _, req := range b.requests() {
				assert.Equal(t, body, req.Body, "the bytes sent must be the bytes given")
				sig := req.Header.Get("Webhook-Signature")
				assert.Len(t, strings.Fields(sig), tt.sigs, "signatures in %q", sig)
				assert.NotEmpty(t, req.Header.Get("Webhook-Id"))
			}
		})
	}
}

func TestSignatureRejectedByReferenceVerifierWithOtherKey(t *testing.T) {
	// The reference verifier must reject what we signed with another key:
	// otherwise the test above proves nothing.
	var seen atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		wh, err := standardwebhooks.NewWebhook(secretB)
		if !assert.NoError(t, err) {
			return
		}
		err = wh.Verify(body, r.Header)
		assert.ErrorIs(t, err, standardwebhooks.ErrNoMatchingSignature, "verifying with the wrong key")
		seen.Add(1)
		_, _ = io.WriteString(w, `{"code":200}`)
	})
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, Secret: secretA})
	require.NoError(t, d.Before(context.Background(), 1, "x", []byte(`{}`)).Err)
	assert.Equal(t, int64(1), seen.Load())
}

func TestUnsignedWithoutSecret(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	require.NoError(t, d.Before(context.Background(), 1, "x", []byte(`{}`)).Err)
	req := b.requests()[0]
	assert.Empty(t, req.Header.Get("Webhook-Signature"), "no secret: no signature")
	assert.Empty(t, req.Header.Get("Webhook-Timestamp"), "no secret: no timestamp")
	assert.NotEmpty(t, req.Header.Get("Webhook-Id"), "webhook-id is always sent")
}

func TestAfterSignsEachAttemptAfresh(t *testing.T) {
	var calls atomic.Int64
	base := time.Now()
	var ok atomic.Int64
	verify := verifyWith(t, &ok, secretA)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		verify(w, r)
	})
	d, _ := newDispatcher(t, fastRetries(callback.Config{URL: b.URL, Secret: secretA}))
	// Each reading of the clock is 10 s later than the last, well within
	// the reference verifier's 5 minutes.
	var ticks atomic.Int64
	callback.SetClock(d, func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * 10 * time.Second) })

	require.NoError(t, d.After(context.Background(), 1, command.MessageSendAfter, []byte(`{"n":1}`)))
	require.NoError(t, d.Close(context.Background()))

	reqs := b.requests()
	require.Len(t, reqs, 3, "attempts")
	assert.Equal(t, int64(1), ok.Load(), "the last attempt must verify")
	seen := map[string]bool{}
	for i, req := range reqs {
		assert.Equal(t, reqs[0].Header.Get("Webhook-Id"), req.Header.Get("Webhook-Id"), "attempt %d: webhook-id must be stable", i+1)
		ts := req.Header.Get("Webhook-Timestamp")
		assert.False(t, seen[ts], "attempt %d: timestamp %s reused", i+1, ts)
		seen[ts] = true
		want := strconv.FormatInt(base.Add(time.Duration(i+1)*10*time.Second).Unix(), 10)
		assert.Equal(t, want, ts, "attempt %d: timestamp", i+1)
	}
}

func TestNewRejectsBadSecret(t *testing.T) {
	short := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23))
	long := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65))
	tests := []struct {
		name     string
		protocol callback.Protocol
		secret   string
		want     string // in the error
	}{
		{"no prefix", callback.AppCommand, base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")), "does not start with"},
		{"not base64", callback.AppCommand, "whsec_not*base64!", "not standard base64"},
		{"key too short", callback.AppCommand, short, "23-byte key"},
		{"key too long", callback.AppCommand, long, "65-byte key"},
		{"second of two bad", callback.AppCommand, secretA + " whsec_%%%", "secret 2"},
		{"Tencent token with a space", callback.Tencent, "s3cr3t t0k3n", "one token"},
		{"Tencent token with a newline", callback.Tencent, "s3cr3tT0k3n\n", "one token"},
		{"OpenIM secret without prefix", callback.OpenIM, "s3cr3tT0k3n", "does not start with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := callback.New(callback.Config{URL: "http://127.0.0.1:1/cb", Protocol: tt.protocol, Secret: tt.secret})
			require.Error(t, err)
			assert.Nil(t, d)
			assert.True(t, errors.Is(err, callback.ErrInvalidConfig), "got %v, want ErrInvalidConfig", err)
			assert.Contains(t, err.Error(), tt.want)
			for _, f := range strings.Fields(tt.secret) {
				assert.NotContains(t, err.Error(), strings.TrimPrefix(f, "whsec_"), "the error must not carry the secret")
			}
		})
	}
}

func TestNewAcceptsKeySizeBounds(t *testing.T) {
	for _, n := range []int{24, 64} {
		secret := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, n))
		d, err := callback.New(callback.Config{URL: "http://127.0.0.1:1/cb", Secret: secret, Logger: discardLogger()})
		require.NoError(t, err, "%d-byte key", n)
		require.NoError(t, d.Close(context.Background()))
	}
}

func TestProtocolText(t *testing.T) {
	for _, p := range []callback.Protocol{callback.AppCommand, callback.Tencent, callback.OpenIM} {
		text, err := p.MarshalText()
		require.NoError(t, err)
		var back callback.Protocol
		require.NoError(t, back.UnmarshalText(text))
		assert.Equal(t, p, back, "round trip of %s", text)
	}
	var p callback.Protocol
	require.NoError(t, p.UnmarshalText([]byte("TENCENT")))
	assert.Equal(t, callback.Tencent, p)
	text, err := callback.AppCommand.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "appcommand", string(text))
	// "seed", AppCommand's first name, is still read (stored app tables,
	// flags in scripts).
	require.NoError(t, p.UnmarshalText([]byte("Seed")))
	assert.Equal(t, callback.AppCommand, p)
	assert.Equal(t, callback.AppCommand, callback.Seed) //nolint:staticcheck // the deprecated alias stays the same value
	require.NoError(t, p.UnmarshalText([]byte("OpenIM")))
	assert.Equal(t, callback.OpenIM, p)
	assert.Equal(t, "openim", callback.OpenIM.String())
	assert.Equal(t, "tencent", callback.Tencent.String())
	err = p.UnmarshalText([]byte("xmpp"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown protocol "xmpp"`)
	assert.NotEqual(t, callback.Tencent, callback.OpenIM)
	assert.NotEqual(t, callback.AppCommand, callback.OpenIM)
}

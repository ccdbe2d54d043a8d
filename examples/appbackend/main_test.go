package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/tencent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemo(t *testing.T) {
	for _, proto := range []string{"seed", "tencent"} {
		t.Run(proto, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(context.Background(), []string{"-demo", "-addr", "127.0.0.1:0", "-protocol", proto}, &out))
			got := out.String()
			assert.Contains(t, got, "signed: true")
			assert.Regexp(t, `"hello" +-> allow`, got)
			assert.Regexp(t, `"darn it" +-> allow .*\*\*\*\* it`, got)
			assert.Regexp(t, `"this is forbidden" +-> deny +code=120001`, got)
			if proto == "tencent" {
				assert.Regexp(t, `"win at the casino" +-> drop`, got)
			} else {
				assert.Regexp(t, `"win at the casino" +-> deny +code=403 msg="dropped"`, got, "Seed has no drop")
			}
			assert.Contains(t, got, "after-event")
			assert.NotContains(t, got, "rejected")
		})
	}
}

// On Tencent the App reads Tencent's MsgBody (TIMTextElem elements), not a
// seed-style {"text": ...}, and its rewrite keeps the other elements.
func TestTencentMsgBody(t *testing.T) {
	h, err := newApp(callback.Tencent, "", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	app := httptest.NewServer(h)
	defer app.Close()
	d, err := callback.New(callback.Config{URL: app.URL, Protocol: callback.Tencent})
	require.NoError(t, err)
	defer d.Close(context.Background())
	before := func(body string) callback.Response {
		r := d.Before(context.Background(), 1400000000, tencent.C2CBeforeSendMsg, []byte(body))
		require.NoError(t, r.Err)
		return r
	}

	r := before(`{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"jared","To_Account":"Jonh",` +
		`"MsgBody":[{"MsgType":"TIMFaceElem","MsgContent":{"Index":1}},{"MsgType":"TIMTextElem","MsgContent":{"Text":"this is forbidden"}}]}`)
	assert.Equal(t, callback.Deny, r.Action, "a banned word in a TIMTextElem")
	assert.Equal(t, 120001, r.Code)

	r = before(`{"From_Account":"jared","To_Account":"Jonh",` +
		`"MsgBody":[{"MsgType":"TIMFaceElem","MsgContent":{"Index":1}},{"MsgType":"TIMTextElem","MsgContent":{"Text":"darn it"}}]}`)
	assert.Equal(t, callback.Allow, r.Action)
	var answer struct{ MsgBody json.RawMessage }
	require.NoError(t, json.Unmarshal(r.Data, &answer))
	assert.JSONEq(t, `[{"MsgType":"TIMFaceElem","MsgContent":{"Index":1}},{"MsgType":"TIMTextElem","MsgContent":{"Text":"**** it"}}]`,
		string(answer.MsgBody), "Tencent's rewrite: MsgBody with the text masked, the face kept")

	r = before(`{"text":"this is forbidden"}`)
	assert.Equal(t, callback.Allow, r.Action, "a seed body carries no MsgBody on Tencent")
	assert.Nil(t, r.Data)
}

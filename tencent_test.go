package callback_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/tencent"
)

// tencentSignOf computes Tencent's Sign independently of the library.
func tencentSignOf(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

func TestTencentDocumentedSignExample(t *testing.T) {
	// Tencent's documentation: token xxxxyyyy, RequestTime 1669872112.
	const want = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
	require.Equal(t, want, tencentSignOf("xxxxyyyy", "1669872112"), "the test's own Sign")

	b := newBackend(t, answerJSON(200, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, Protocol: callback.Tencent, Secret: "xxxxyyyy"})
	callback.SetClock(d, func() time.Time { return time.Unix(1669872112, 0) })
	require.NoError(t, d.Before(context.Background(), 1400000000, tencent.C2CBeforeSendMsg, []byte(`{}`)).Err)

	q := b.requests()[0].Query
	assert.Equal(t, []string{"1669872112"}, q["RequestTime"])
	assert.Equal(t, []string{want}, q["Sign"])
}

func TestTencentWireFormat(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		secret string
		ctx    context.Context
		want   url.Values // exactly the query received
	}{
		{
			name: "unsigned, no client",
			ctx:  context.Background(),
			want: url.Values{"SdkAppid": {"1400000000"}, "CallbackCommand": {"C2C.CallbackBeforeSendMsg"}, "contenttype": {"json"}},
		},
		{
			name: "client IP and platform",
			ctx:  callback.WithClient(context.Background(), "203.0.113.9", "iOS"),
			want: url.Values{"SdkAppid": {"1400000000"}, "CallbackCommand": {"C2C.CallbackBeforeSendMsg"}, "contenttype": {"json"},
				"ClientIP": {"203.0.113.9"}, "OptPlatform": {"iOS"}},
		},
		{
			name: "only the platform",
			ctx:  callback.WithClient(context.Background(), "", "RESTAPI"),
			want: url.Values{"SdkAppid": {"1400000000"}, "CallbackCommand": {"C2C.CallbackBeforeSendMsg"}, "contenttype": {"json"}, "OptPlatform": {"RESTAPI"}},
		},
		{
			name: "URL's own query kept, reserved names dropped",
			url:  "?region=sg&Sign=forged&SdkAppid=1",
			ctx:  context.Background(),
			want: url.Values{"region": {"sg"}, "SdkAppid": {"1400000000"}, "CallbackCommand": {"C2C.CallbackBeforeSendMsg"}, "contenttype": {"json"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, answerJSON(200, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`))
			d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/im" + tt.url, Protocol: callback.Tencent})
			body := []byte(`{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"a","To_Account":"b"}`)
			r := d.Before(tt.ctx, 1400000000, tencent.C2CBeforeSendMsg, body)
			require.NoError(t, r.Err)
			req := b.requests()[0]
			assert.Equal(t, http.MethodPost, req.Method)
			assert.Equal(t, "/im", req.Path)
			assert.Equal(t, tt.want, url.Values(req.Query))
			assert.Equal(t, body, req.Body)
			assert.Equal(t, "application/json", req.Header.Get("Content-Type"))
		})
	}
}

func TestTencentSeedSendsNoClient(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	ctx := callback.WithClient(context.Background(), "203.0.113.9", "Web")
	require.NoError(t, d.Before(ctx, 1, "x", []byte(`{}`)).Err)
	assert.Equal(t, url.Values{"appId": {"1"}, "command": {"x"}}, url.Values(b.requests()[0].Query))
}

func TestTencentAfterCapturesClientAndSignsEachAttempt(t *testing.T) {
	const token = "s3cr3t-t0k3n"
	var calls atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		answerJSON(200, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)(w, r)
	})
	d, _ := newDispatcher(t, fastRetries(callback.Config{URL: b.URL, Protocol: callback.Tencent, Secret: token}))
	var ticks atomic.Int64
	base := time.Now()
	callback.SetClock(d, func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Second) })

	ctx, cancel := context.WithCancel(callback.WithClient(context.Background(), "198.51.100.7", "Android"))
	require.NoError(t, d.After(ctx, 1400000000, tencent.C2CAfterSendMsg, []byte(`{"CallbackCommand":"C2C.CallbackAfterSendMsg"}`)))
	cancel() // the caller's request ends; the event lives on
	require.NoError(t, d.Close(context.Background()))

	reqs := b.requests()
	require.Len(t, reqs, 2, "attempts")
	for i, req := range reqs {
		q := url.Values(req.Query)
		assert.Equal(t, "198.51.100.7", q.Get("ClientIP"), "attempt %d", i+1)
		assert.Equal(t, "Android", q.Get("OptPlatform"), "attempt %d", i+1)
		rt := q.Get("RequestTime")
		assert.Equal(t, strconv.FormatInt(base.Add(time.Duration(i+1)*time.Second).Unix(), 10), rt, "attempt %d: RequestTime must be fresh", i+1)
		assert.Equal(t, tencentSignOf(token, rt), q.Get("Sign"), "attempt %d: Sign", i+1)
		assert.Len(t, q["Sign"], 1, "attempt %d: one Sign", i+1)
	}
}

func TestTencentAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		want   callback.Response // Err not compared
		bad    bool              // a failure: ErrBadAnswer
	}{
		{name: "allow", answer: `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`,
			want: callback.Response{Code: 0, Action: callback.Allow}},
		{name: "deny", answer: `{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"no"}`,
			want: callback.Response{Code: 1, Msg: "no", Action: callback.Deny}},
		{name: "drop", answer: `{"ActionStatus":"OK","ErrorCode":2,"ErrorInfo":""}`,
			want: callback.Response{Code: 2, Action: callback.Drop}},
		{name: "deny with the App's code and text", answer: `{"ActionStatus":"OK","ErrorCode":120001,"ErrorInfo":"banned word"}`,
			want: callback.Response{Code: 120001, Msg: "banned word", Action: callback.Deny}},
		{name: "top of the App's range", answer: `{"ErrorCode":130000,"ErrorInfo":"x"}`,
			want: callback.Response{Code: 130000, Msg: "x", Action: callback.Deny}},
		{name: "rewrite: whole answer in Data",
			answer: `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"***"}}]}`,
			want: callback.Response{Code: 0, Action: callback.Allow,
				Data: []byte(`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"***"}}]}`)}},
		{name: "refused members", answer: `{"ErrorCode":0,"RefusedMembers_Account":["eve"]}`,
			want: callback.Response{Code: 0, Action: callback.Allow, Data: []byte(`{"ErrorCode":0,"RefusedMembers_Account":["eve"]}`)}},
		{name: "missing ErrorCode", answer: `{"ActionStatus":"OK","ErrorInfo":""}`, bad: true},
		{name: "null ErrorCode", answer: `{"ErrorCode":null}`, bad: true},
		{name: "string ErrorCode", answer: `{"ErrorCode":"0"}`, bad: true},
		{name: "fractional ErrorCode", answer: `{"ErrorCode":0.5}`, bad: true},
		{name: "ErrorInfo not a string", answer: `{"ErrorCode":1,"ErrorInfo":7}`, bad: true},
		{name: "seed answer", answer: `{"code":200,"msg":"success"}`, bad: true},
		{name: "not an object", answer: `[0]`, bad: true},
		{name: "not JSON", answer: `OK`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, answerJSON(200, tt.answer))
			for _, failClosed := range []bool{false, true} {
				d, _ := newDispatcher(t, callback.Config{URL: b.URL, Protocol: callback.Tencent,
					Commands: map[string]callback.Rule{"cmd": {FailClosed: failClosed}}})
				r := d.Before(context.Background(), 1, "cmd", []byte(`{}`))
				if !tt.bad {
					require.NoError(t, r.Err)
					tt.want.Protocol = callback.Tencent
					assert.Equal(t, tt.want, r)
					continue
				}
				assert.True(t, errors.Is(r.Err, callback.ErrBadAnswer), "got %v, want ErrBadAnswer", r.Err)
				if failClosed {
					assert.Equal(t, callback.Deny, r.Action, "fail closed")
				} else {
					assert.Equal(t, callback.Allow, r.Action, "fail open")
				}
			}
		})
	}
}

func TestTencentSignNeverLogged(t *testing.T) {
	const token = "s3cr3t-t0k3n"
	b := newBackend(t, hang)
	var dead deadLetters
	d, logs := newDispatcher(t, callback.Config{URL: b.URL, Protocol: callback.Tencent, Secret: token,
		Timeout: 50 * time.Millisecond, Retries: -1, DeadLetter: dead.hook})
	ctx := callback.WithClient(context.Background(), "203.0.113.9", "Web")

	r := d.Before(ctx, 1, "cmd", []byte(`{}`))
	require.Error(t, r.Err)
	require.NoError(t, d.After(ctx, 1, "cmd", []byte(`{}`)))
	require.NoError(t, d.Close(context.Background()))
	_, errs := dead.snapshot()
	require.Len(t, errs, 1)

	sign := url.Values(b.requests()[0].Query).Get("Sign")
	require.NotEmpty(t, sign)
	for name, text := range map[string]string{"log": logs.String(), "Before's Err": r.Err.Error(), "dead letter error": errs[0].Error()} {
		for _, secret := range []string{token, sign, "Sign=", "203.0.113.9"} {
			assert.False(t, strings.Contains(text, secret), "%s carries %q: %s", name, secret, text)
		}
	}
}

package receiver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
	"github.com/imcallback/callback/tencent"
)

var (
	secretOld = "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-key-old-key-old-key-old-key!"))
	secretNew = "whsec_" + base64.StdEncoding.EncodeToString([]byte("new-key-new-key-new-key-new-key!"))
)

// serve starts a real server on h.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func newHandler(t *testing.T, cfg receiver.Config) *receiver.Handler {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := receiver.New(cfg)
	require.NoError(t, err)
	return h
}

// post sends one request and returns its status and body.
func post(t *testing.T, method, url string, header http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// signed returns Standard Webhooks headers made by the reference library.
func signed(t *testing.T, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	sig, err := wh.Sign(id, ts, body)
	require.NoError(t, err)
	return http.Header{
		"Webhook-Id":        {id},
		"Webhook-Timestamp": {strconv.FormatInt(ts.Unix(), 10)},
		"Webhook-Signature": {sig},
	}
}

func TestSeedRequests(t *testing.T) {
	now := time.Now()
	body := []byte(`{"from":"alice","text":"hi"}`)
	good := signed(t, secretNew, "msg_1", now, body)
	with := func(h http.Header, k, v string) http.Header {
		h = h.Clone()
		h.Set(k, v)
		return h
	}
	tests := []struct {
		name   string
		method string
		query  string
		header http.Header
		body   []byte
		status int
		want   string // in the answer
	}{
		{"genuine", "POST", "?appId=7&command=message.send.before", good, body, 200, `{"code":200,"msg":"success"}`},
		{"handler's deny", "POST", "?appId=7&command=deny", signed(t, secretNew, "msg_2", now, body), body, 200, `{"code":4001,"msg":"no"}`},
		{"unknown command allowed", "POST", "?appId=7&command=nobody.handles.this", signed(t, secretNew, "msg_3", now, body), body, 200, `{"code":200,"msg":"success"}`},
		{"signed with the old key too", "POST", "?appId=7&command=x", rotate(t, now, body), body, 200, `"code":200`},
		{"GET", "GET", "?appId=7&command=x", good, nil, 405, "method GET not allowed"},
		{"PUT", "PUT", "?appId=7&command=x", good, body, 405, "not allowed"},
		{"body too large", "POST", "?appId=7&command=x", good, bytes.Repeat([]byte(" "), 2000), 413, "body over 1000 bytes"},
		{"no signature", "POST", "?appId=7&command=x", http.Header{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {strconv.FormatInt(now.Unix(), 10)}}, body, 401, "missing"},
		{"no headers", "POST", "?appId=7&command=x", nil, body, 401, "missing"},
		{"signed with an unknown key", "POST", "?appId=7&command=x", signed(t, secretOld, "msg_1", now, body), body, 401, "no webhook-signature matches"},
		{"tampered body", "POST", "?appId=7&command=x", good, []byte(`{"from":"mallory","text":"hi"}`), 401, "no webhook-signature matches"},
		{"tampered id", "POST", "?appId=7&command=x", with(good, "Webhook-Id", "msg_2"), body, 401, "no webhook-signature matches"},
		{"tampered timestamp", "POST", "?appId=7&command=x", with(good, "Webhook-Timestamp", strconv.FormatInt(now.Unix()+1, 10)), body, 401, "no webhook-signature matches"},
		{"unknown version", "POST", "?appId=7&command=x", with(good, "Webhook-Signature", "v2"+good.Get("Webhook-Signature")[2:]), body, 401, "no webhook-signature matches"},
		{"old timestamp", "POST", "?appId=7&command=x", signed(t, secretNew, "msg_1", now.Add(-6*time.Minute), body), body, 401, "too old"},
		{"future timestamp", "POST", "?appId=7&command=x", signed(t, secretNew, "msg_1", now.Add(6*time.Minute), body), body, 401, "too new"},
		{"timestamp not a number", "POST", "?appId=7&command=x", with(good, "Webhook-Timestamp", "yesterday"), body, 401, "not unix seconds"},
		{"timestamp overflows", "POST", "?appId=7&command=x", with(good, "Webhook-Timestamp", "-9223372036854775808"), body, 401, "too old"},
		{"no command", "POST", "?appId=7", good, body, 400, "missing command"},
		{"no appId", "POST", "?command=x", good, body, 400, "missing appId"},
		{"appId not a number", "POST", "?appId=seven&command=x", good, body, 400, "appId is not an integer"},
		{"not JSON", "POST", "?appId=7&command=x", signed(t, secretNew, "msg_1", now, []byte(`{"a":`)), []byte(`{"a":`), 400, "not valid JSON"},
		{"handler error", "POST", "?appId=7&command=error", signed(t, secretNew, "msg_4", now, body), body, 500, "handler failed"},
		{"handler panic", "POST", "?appId=7&command=panic", signed(t, secretNew, "msg_5", now, body), body, 500, "handler failed"},
		{"undecodable decision", "POST", "?appId=7&command=bad", signed(t, secretNew, "msg_6", now, body), body, 500, "cannot be answered"},
	}
	logs := &syncBuffer{}
	h := newHandler(t, receiver.Config{Secret: secretNew, MaxBodyBytes: 1000, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	h.Handle("deny", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Deny(4001, "no"), nil
	})
	h.Handle("error", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Decision{}, errors.New("database down")
	})
	h.Handle("panic", func(context.Context, *receiver.Request) (receiver.Decision, error) { panic("boom") })
	h.Handle("bad", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Deny(200, "200 would allow"), nil
	})
	s := serve(t, h)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, answer := post(t, tt.method, s.URL+"/callback"+tt.query, tt.header, tt.body)
			assert.Equal(t, tt.status, status, "status; answer %q", answer)
			assert.Contains(t, answer, tt.want)
		})
	}
	assert.Contains(t, logs.String(), "boom", "a handler's panic is logged")
	assert.Contains(t, logs.String(), "database down", "a handler's error is logged")
	assert.NotContains(t, logs.String(), "alice", "bodies are never logged")
	assert.NotContains(t, logs.String(), strings.TrimPrefix(secretNew, "whsec_"), "secrets are never logged")
}

// rotate signs with both keys, as a sender in the middle of a rotation.
func rotate(t *testing.T, now time.Time, body []byte) http.Header {
	h := signed(t, secretOld, "msg_9", now, body)
	h2 := signed(t, secretNew, "msg_9", now, body)
	h.Set("Webhook-Signature", h.Get("Webhook-Signature")+" "+h2.Get("Webhook-Signature"))
	return h
}

func TestMethodNotAllowedSaysPost(t *testing.T) {
	s := serve(t, newHandler(t, receiver.Config{}))
	res, err := http.Get(s.URL)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)
	assert.Equal(t, "POST", res.Header.Get("Allow"))
}

func TestBodyTooLargeWithoutContentLength(t *testing.T) {
	s := serve(t, newHandler(t, receiver.Config{MaxBodyBytes: 10}))
	// A pipe hides the length, so the body is sent chunked.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(bytes.Repeat([]byte("1"), 100))
		_ = pw.Close()
	}()
	res, err := http.Post(s.URL+"?appId=1&command=x", "application/json", pr)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
}

func TestTencentRequests(t *testing.T) {
	const token = "xxxxyyyy"
	now := time.Unix(1669872112, 0)
	const sign = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061" // Tencent's documented example
	base := "?SdkAppid=1400000000&CallbackCommand=C2C.CallbackBeforeSendMsg&contenttype=json&ClientIP=203.0.113.9&OptPlatform=iOS"
	body := []byte(`{"CallbackCommand":"C2C.CallbackBeforeSendMsg"}`)
	tests := []struct {
		name   string
		query  string
		status int
		want   string
	}{
		{"documented example", base + "&RequestTime=1669872112&Sign=" + sign, 200, `"ErrorCode":0`},
		{"second token of two", base + "&RequestTime=1669872112&Sign=" + tencentSign("other", "1669872112"), 200, `"ErrorCode":0`},
		{"no Sign", base + "&RequestTime=1669872112", 401, "missing RequestTime or Sign"},
		{"no RequestTime", base + "&Sign=" + sign, 401, "missing RequestTime or Sign"},
		{"wrong Sign", base + "&RequestTime=1669872112&Sign=" + tencentSign("wrong", "1669872112"), 401, "Sign does not match"},
		{"upper-case Sign", base + "&RequestTime=1669872112&Sign=" + strings.ToUpper(sign), 401, "Sign does not match"},
		{"RequestTime over a minute old", base + "&RequestTime=1669872051&Sign=" + tencentSign(token, "1669872051"), 401, "too old"},
		{"RequestTime a minute old", base + "&RequestTime=1669872052&Sign=" + tencentSign(token, "1669872052"), 200, `"ErrorCode":0`},
		{"no CallbackCommand", "?SdkAppid=1&RequestTime=1669872112&Sign=" + sign, 400, "missing CallbackCommand"},
		{"no SdkAppid", "?CallbackCommand=x&RequestTime=1669872112&Sign=" + sign, 400, "missing SdkAppid"},
	}
	var got atomic.Pointer[receiver.Request]
	h := newHandler(t, receiver.Config{Protocol: callback.Tencent, Secret: token + " other"})
	receiver.SetClock(h, func() time.Time { return now })
	h.Handle(tencent.C2CBeforeSendMsg, func(_ context.Context, r *receiver.Request) (receiver.Decision, error) {
		got.Store(r)
		return receiver.Allow(), nil
	})
	s := serve(t, h)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, answer := post(t, "POST", s.URL+tt.query, nil, body)
			assert.Equal(t, tt.status, status, "status; answer %q", answer)
			assert.Contains(t, answer, tt.want)
		})
	}
	r := got.Load()
	require.NotNil(t, r)
	assert.Equal(t, 1400000000, r.AppID)
	assert.Equal(t, "203.0.113.9", r.ClientIP)
	assert.Equal(t, "iOS", r.Platform)
	assert.JSONEq(t, string(body), string(r.Body))
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  receiver.Config
	}{
		{"secret without prefix", receiver.Config{Secret: "c2VjcmV0"}},
		{"secret not base64", receiver.Config{Secret: "whsec_!!"}},
		{"short key", receiver.Config{Secret: "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 8))}},
		{"negative tolerance", receiver.Config{Tolerance: -time.Second}},
		{"negative body limit", receiver.Config{MaxBodyBytes: -1}},
		{"negative dedup", receiver.Config{Dedup: -1}},
		{"OpenIM secret without prefix", receiver.Config{Protocol: callback.OpenIM, Secret: "c2VjcmV0"}},
		{"OpenIM negative tolerance", receiver.Config{Protocol: callback.OpenIM, Tolerance: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := receiver.New(tt.cfg)
			assert.Nil(t, h)
			assert.True(t, errors.Is(err, receiver.ErrInvalidConfig), "got %v, want ErrInvalidConfig", err)
		})
	}
}

func TestHandleReplacesAndRemoves(t *testing.T) {
	h := newHandler(t, receiver.Config{Default: func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Deny(1, "default"), nil
	}})
	s := serve(t, h)
	ask := func() string {
		_, answer := post(t, "POST", s.URL+"?appId=1&command=c", nil, []byte(`{}`))
		return answer
	}
	assert.JSONEq(t, `{"code":1,"msg":"default"}`, ask(), "no handler: Default")
	h.Handle("c", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Deny(2, "first"), nil
	})
	h.Handle("c", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Deny(3, "second"), nil
	})
	assert.JSONEq(t, `{"code":3,"msg":"second"}`, ask(), "the later handler wins")
	h.Handle("c", nil)
	assert.JSONEq(t, `{"code":1,"msg":"default"}`, ask(), "removed: Default again")
}

func TestDedupAnswersRepeatsWithoutCallingAgain(t *testing.T) {
	var calls atomic.Int64
	var offset atomic.Int64
	h := newHandler(t, receiver.Config{Secret: secretNew, Dedup: 2})
	receiver.SetClock(h, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	h.Handle("c", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		n := calls.Add(1)
		return receiver.Deny(int(n), "call "+strconv.FormatInt(n, 10)), nil
	})
	s := serve(t, h)
	send := func(id string, body string) (int, string) {
		now := time.Now().Add(time.Duration(offset.Load()))
		return post(t, "POST", s.URL+"?appId=1&command=c", signed(t, secretNew, id, now, []byte(body)), []byte(body))
	}
	answer := func(id string) string {
		status, a := send(id, `{}`)
		require.Equal(t, http.StatusOK, status, a)
		return a
	}
	assert.JSONEq(t, `{"code":1,"msg":"call 1"}`, answer("a"))
	assert.JSONEq(t, `{"code":1,"msg":"call 1"}`, answer("a"), "a repeat gets the first answer")
	assert.JSONEq(t, `{"code":2,"msg":"call 2"}`, answer("b"))

	// Full, and nothing is old enough to forget: a new ID is refused, not
	// let through unremembered.
	status, body := send("c", `{}`)
	assert.Equal(t, http.StatusServiceUnavailable, status, body)
	assert.Equal(t, int64(2), calls.Load())

	// So a is still remembered, and replaying it under another command
	// and app is refused however many other requests came since.
	hdr := signed(t, secretNew, "a", time.Now(), []byte(`{}`))
	status, body = post(t, "POST", s.URL+"?appId=2&command=other", hdr, []byte(`{}`))
	assert.Equal(t, http.StatusConflict, status, body)
	assert.Equal(t, int64(2), calls.Load(), "the replay must not reach a handler")

	// Past twice the tolerance, a and b can no longer pass the timestamp
	// check, so they are forgotten and make room.
	offset.Store(int64(10*time.Minute + time.Second))
	assert.JSONEq(t, `{"code":3,"msg":"call 3"}`, answer("c"))
	assert.JSONEq(t, `{"code":4,"msg":"call 4"}`, answer("a"), "a is forgotten once no replay of it can pass")
	assert.Equal(t, int64(4), calls.Load())
}

func TestDedupWithoutSignedIDsComparesContent(t *testing.T) {
	var calls atomic.Int64
	h := newHandler(t, receiver.Config{Protocol: callback.Tencent, Dedup: 10})
	h.Handle("c", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		n := calls.Add(1)
		return receiver.Deny(120000+int(n), "call"), nil
	})
	s := serve(t, h)
	send := func(id, body string) string {
		_, answer := post(t, "POST", s.URL+"?SdkAppid=1&CallbackCommand=c", http.Header{"Webhook-Id": {id}}, []byte(body))
		return answer
	}
	assert.Contains(t, send("a", `{}`), "120001")
	assert.Contains(t, send("a", `{}`), "120001", "a repeat gets the first answer")
	assert.Contains(t, send("a", `{"other":1}`), "120002", "same ID, other body: not a repeat")
	assert.Contains(t, send("", `{}`), "120003", "no ID: never a repeat")
	assert.Contains(t, send("", `{}`), "120004", "no ID: never a repeat")
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// tencentSign computes Tencent's Sign independently of the package.
func tencentSign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

package receiver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
)

// The fuzz targets call ServeHTTP in-process with a recorder: a server per
// input would make the fuzzer thousands of times slower, and the listener
// is not what is under test. The end-to-end tests go over real HTTP.

// fuzzNow is the receiving clock of the fuzz targets.
var fuzzNow = time.Unix(1700000000, 0)

const fuzzMaxBody = 4096

// fuzzHandler returns a Handler with cfg whose every handler records that
// it was called.
func fuzzHandler(f *testing.F, cfg receiver.Config, called *bool) *receiver.Handler {
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.MaxBodyBytes = fuzzMaxBody
	cfg.Default = func(_ context.Context, r *receiver.Request) (receiver.Decision, error) {
		*called = true
		return receiver.Rewrite(json.RawMessage(`{"echo":1}`)), nil
	}
	h, err := receiver.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	receiver.SetClock(h, func() time.Time { return fuzzNow })
	return h
}

// serveOne sends one request to h in-process.
func serveOne(h http.Handler, method, rawQuery string, header http.Header, body []byte) *httptest.ResponseRecorder {
	req := &http.Request{
		Method:        method,
		URL:           &url.URL{Path: "/callback", RawQuery: rawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		RemoteAddr:    "192.0.2.1:1234",
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req.WithContext(context.Background()))
	return w
}

// checkStatus fails on a status ServeHTTP must never give, and on a 200
// whose answer is not JSON.
func checkStatus(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	switch w.Code {
	case 200:
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("200 with an answer that is not JSON: %q", w.Body.Bytes())
		}
	case 400, 401, 405, 408, 409, 413, 503:
	default:
		t.Fatalf("status %d: %q", w.Code, w.Body.String())
	}
}

func FuzzSeedRequest(f *testing.F) {
	body := []byte(`{"from":"alice","text":"hi"}`)
	wh, err := standardwebhooks.NewWebhook(secretNew)
	if err != nil {
		f.Fatal(err)
	}
	sig, _ := wh.Sign("msg_1", fuzzNow, body)
	ts := strconv.FormatInt(fuzzNow.Unix(), 10)
	f.Add("POST", "appId=7&command=message.send.before", "msg_1", ts, sig, body)
	f.Add("POST", "appId=7&command=x&appId=8", "msg_1", ts, sig+" v1,AAAA v2,x", body)
	f.Add("POST", "appId=7&command=x", "msg_1", ts, "v1,"+sig[3:], []byte(`{"from":"mallory"}`))
	f.Add("POST", "appId=%zz&command=x", "msg_1", "-1", "v1,", []byte(`{`))
	f.Add("GET", "", "", "", "", []byte(nil))
	f.Add("POST", "appId=99999999999999999999&command=x", "msg_1", "9223372036854775807", sig, body)

	var called bool
	h := fuzzHandler(f, receiver.Config{Secret: secretNew, Dedup: 16}, &called)
	f.Fuzz(func(t *testing.T, method, rawQuery, id, ts, sig string, body []byte) {
		called = false
		header := http.Header{"Webhook-Id": {id}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {sig}}
		w := serveOne(h, method, rawQuery, header, body)
		checkStatus(t, w)
		if !called {
			return
		}
		// The oracle is the reference verifier: nothing it rejects may
		// reach a handler.
		if err := wh.VerifyIgnoringTimestamp(body, header); err != nil {
			t.Fatalf("a handler got a request the reference verifier rejects: %v", err)
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || sec < fuzzNow.Unix()-300 || sec > fuzzNow.Unix()+300 {
			t.Fatalf("a handler got a request stamped %q, now %d", ts, fuzzNow.Unix())
		}
		if len(body) > fuzzMaxBody || !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("a handler got a body of %d bytes, valid JSON %v, UTF-8 %v", len(body), json.Valid(body), utf8.Valid(body))
		}
	})
}

func FuzzTencentRequest(f *testing.F) {
	const token = "xxxxyyyy"
	const valid = "SdkAppid=1400000000&CallbackCommand=C2C.CallbackBeforeSendMsg&contenttype=json&ClientIP=203.0.113.9&OptPlatform=iOS"
	rt := strconv.FormatInt(fuzzNow.Unix(), 10)
	f.Add(valid+"&RequestTime="+rt+"&Sign="+tencentSign(token, rt), []byte(`{"CallbackCommand":"C2C.CallbackBeforeSendMsg"}`))
	f.Add(valid+"&RequestTime="+rt+"&Sign="+tencentSign(token, rt)+"&Sign=00", []byte(`{}`))
	f.Add(valid+"&RequestTime=1669872112&Sign=17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061", []byte(`{}`))
	f.Add("SdkAppid=x&CallbackCommand=&RequestTime=%&Sign=;", []byte(`[`))
	f.Add("", []byte(nil))

	var called bool
	h := fuzzHandler(f, receiver.Config{Protocol: callback.Tencent, Secret: token, Dedup: 16}, &called)
	f.Fuzz(func(t *testing.T, rawQuery string, body []byte) {
		called = false
		w := serveOne(h, "POST", rawQuery, http.Header{}, body)
		checkStatus(t, w)
		if !called {
			return
		}
		q, _ := url.ParseQuery(rawQuery)
		rt := q.Get("RequestTime")
		if q.Get("Sign") != tencentSign(token, rt) {
			t.Fatalf("a handler got a request with Sign %q for RequestTime %q", q.Get("Sign"), rt)
		}
		sec, err := strconv.ParseInt(rt, 10, 64)
		if err != nil || sec < fuzzNow.Unix()-60 || sec > fuzzNow.Unix()+60 {
			t.Fatalf("a handler got a request with RequestTime %q, now %d", rt, fuzzNow.Unix())
		}
	})
}

// parseHeader reads a header block, one "Name: value" a line, as a server
// would have: names canonicalised, values trimmed, repeats kept in order.
func parseHeader(block string) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(block, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t\r") {
			continue
		}
		h.Add(name, strings.TrimSpace(value)) // Add canonicalises the name
	}
	return h
}

// FuzzSeedHeaders feeds whole header blocks, in both spellings (Standard
// Webhooks' webhook-* and Svix's svix-*), mixed and repeated, with any
// body. The oracle is the reference verifier given the headers the
// Handler should have read: nothing it rejects may reach a handler, and
// the handler's Request.ID is the ID that was verified.
func FuzzSeedHeaders(f *testing.F) {
	body := []byte(`{"from":"alice","text":"hi"}`)
	wh, err := standardwebhooks.NewWebhook(secretNew)
	if err != nil {
		f.Fatal(err)
	}
	sig, _ := wh.Sign("msg_1", fuzzNow, body)
	ts := strconv.FormatInt(fuzzNow.Unix(), 10)
	f.Add("webhook-id: msg_1\nwebhook-timestamp: "+ts+"\nwebhook-signature: "+sig, body)
	f.Add("svix-id: msg_1\nsvix-timestamp: "+ts+"\nsvix-signature: "+sig, body)
	f.Add("svix-id: msg_1\nwebhook-timestamp: "+ts+"\nsvix-signature: "+sig, body)
	f.Add("webhook-id: msg_2\nsvix-id: msg_1\nwebhook-timestamp: "+ts+"\nwebhook-signature: "+sig, body)
	f.Add("webhook-id: msg_1\nwebhook-id: msg_2\nwebhook-timestamp: "+ts+"\nwebhook-signature: v1,AAAA\nwebhook-signature: "+sig, body)
	f.Add("Webhook-Id:msg_1\nWEBHOOK-TIMESTAMP:  "+ts+" \nwebhook-signature: "+sig+" "+sig, body)
	f.Add("webhook-id: msg_1\nwebhook-timestamp: "+ts+"\nwebhook-signature: "+sig, []byte("{\"from\":\"\xff\"}"))

	var called bool
	var gotID string
	h := fuzzHandler(f, receiver.Config{Secret: secretNew}, &called)
	h.Handle("c", func(_ context.Context, r *receiver.Request) (receiver.Decision, error) {
		called, gotID = true, r.ID
		return receiver.Allow(), nil
	})
	f.Fuzz(func(t *testing.T, block string, body []byte) {
		called, gotID = false, ""
		header := parseHeader(block)
		w := serveOne(h, "POST", "appId=7&command=c", header, body)
		checkStatus(t, w)
		if !called {
			return
		}
		// The Handler reads the webhook-* names, or the svix-* names when
		// none of those is present.
		want := http.Header{}
		prefix := "Webhook-"
		if header.Get("Webhook-Id") == "" && header.Get("Webhook-Timestamp") == "" && header.Get("Webhook-Signature") == "" {
			prefix = "Svix-"
		}
		for _, k := range []string{"Id", "Timestamp", "Signature"} {
			want.Set("Webhook-"+k, header.Get(prefix+k))
		}
		if err := wh.VerifyIgnoringTimestamp(body, want); err != nil {
			t.Fatalf("a handler got a request the reference verifier rejects: %v", err)
		}
		if gotID != want.Get("Webhook-Id") {
			t.Fatalf("Request.ID %q, verified ID %q", gotID, want.Get("Webhook-Id"))
		}
		sec, err := strconv.ParseInt(want.Get("Webhook-Timestamp"), 10, 64)
		if err != nil || sec < fuzzNow.Unix()-300 || sec > fuzzNow.Unix()+300 {
			t.Fatalf("a handler got a request stamped %q, now %d", want.Get("Webhook-Timestamp"), fuzzNow.Unix())
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("a handler got a body that is not UTF-8 JSON")
		}
	})
}

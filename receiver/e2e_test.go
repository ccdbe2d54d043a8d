package receiver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
)

// End-to-end: a real Dispatcher calls a real receiver over loopback HTTP.

func newDispatcher(t *testing.T, cfg callback.Config) *callback.Dispatcher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.RetryWaitMin, cfg.RetryWaitMax = time.Millisecond, 5*time.Millisecond
	d, err := callback.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

// events records what a receiver's handlers were called with.
type events struct {
	mu   sync.Mutex
	reqs []*receiver.Request
}

func (e *events) add(r *receiver.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reqs = append(e.reqs, r)
}

func (e *events) all() []*receiver.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*receiver.Request(nil), e.reqs...)
}

// decide returns a handler that records each request and answers dec.
func (e *events) decide(dec receiver.Decision) receiver.HandlerFunc {
	return func(_ context.Context, r *receiver.Request) (receiver.Decision, error) {
		e.add(r)
		return dec, nil
	}
}

const tencentToken = "tencent-token-1"

func TestEndToEndDecisions(t *testing.T) {
	type outcome struct {
		action callback.Action
		code   int
		msg    string
		data   string // JSON; "" for none
	}
	tests := []struct {
		name     string
		protocol callback.Protocol
		dec      receiver.Decision
		want     outcome
	}{
		{"seed allow", callback.AppCommand, receiver.Allow(), outcome{callback.Allow, 200, "success", ""}},
		{"seed rewrite", callback.AppCommand, receiver.Rewrite(json.RawMessage(`{"members":["bob"]}`)), outcome{callback.Allow, 200, "success", `{"members":["bob"]}`}},
		{"seed deny", callback.AppCommand, receiver.Deny(4001, "not friends"), outcome{callback.Deny, 4001, "not friends", ""}},
		{"seed drop is a deny", callback.AppCommand, receiver.Drop(), outcome{callback.Deny, 403, "dropped", ""}},
		{"tencent allow", callback.Tencent, receiver.Allow(), outcome{callback.Allow, 0, "", ""}},
		{"tencent rewrite", callback.Tencent, receiver.Rewrite(json.RawMessage(`{"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"***"}}]}`)),
			outcome{callback.Allow, 0, "", `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"***"}}]}`}},
		{"tencent deny with the App's code", callback.Tencent, receiver.Deny(120001, "banned word"), outcome{callback.Deny, 120001, "banned word", ""}},
		{"tencent plain deny", callback.Tencent, receiver.Deny(0, "no"), outcome{callback.Deny, 1, "no", ""}},
		{"tencent drop", callback.Tencent, receiver.Drop(), outcome{callback.Drop, 2, "", ""}},
	}
	for _, tt := range tests {
		for _, withSecret := range []bool{false, true} {
			name := tt.name + ", unsigned"
			var secret string
			if withSecret {
				name = tt.name + ", signed"
				secret = secretNew
				if tt.protocol == callback.Tencent {
					secret = tencentToken
				}
			}
			t.Run(name, func(t *testing.T) {
				var got events
				h := newHandler(t, receiver.Config{Protocol: tt.protocol, Secret: secret})
				h.Handle("before", got.decide(tt.dec))
				h.Handle("after", got.decide(receiver.Allow()))
				s := serve(t, h)
				var dead atomic.Int64
				d := newDispatcher(t, callback.Config{URL: s.URL + "/callback", Protocol: tt.protocol, Secret: secret,
					DeadLetter: func(callback.Event, error) { dead.Add(1) }})

				ctx := callback.WithClient(context.Background(), "203.0.113.9", "Android")
				r := d.Before(ctx, 42, "before", []byte(`{"text":"hello"}`))
				require.NoError(t, r.Err)
				assert.Equal(t, tt.want.action, r.Action, "Action")
				assert.Equal(t, tt.want.code, r.Code, "Code")
				assert.Equal(t, tt.want.msg, r.Msg, "Msg")
				if tt.want.data == "" {
					assert.Nil(t, r.Data, "Data")
				} else {
					assert.JSONEq(t, tt.want.data, string(r.Data), "Data")
				}

				require.NoError(t, d.After(ctx, 42, "after", []byte(`{"text":"hello","n":2}`)))
				require.NoError(t, d.Close(context.Background()))
				assert.Zero(t, dead.Load(), "dead letters")

				reqs := got.all()
				require.Len(t, reqs, 2, "callbacks received")
				for _, req := range reqs {
					assert.Equal(t, 42, req.AppID)
					assert.NotEmpty(t, req.ID, "webhook-id")
					if tt.protocol == callback.Tencent {
						assert.Equal(t, "203.0.113.9", req.ClientIP)
						assert.Equal(t, "Android", req.Platform)
					} else {
						assert.Empty(t, req.ClientIP)
					}
				}
				assert.Equal(t, "before", reqs[0].Command)
				assert.JSONEq(t, `{"text":"hello","n":2}`, string(reqs[1].Body))
			})
		}
	}
}

func TestEndToEndKeyRotation(t *testing.T) {
	tests := []struct {
		name     string
		sender   string
		receiver string
		accepted bool
	}{
		{"sender rotating, receiver still on the old key", secretOld + " " + secretNew, secretOld, true},
		{"sender rotating, receiver on the new key", secretOld + " " + secretNew, secretNew, true},
		{"sender on the old key, receiver accepting both", secretOld, secretOld + " " + secretNew, true},
		{"sender on the new key, receiver still on the old", secretNew, secretOld, false},
		{"sender unsigned, receiver verifying", "", secretNew, false},
		{"tencent: receiver accepting old and new tokens", "new-token", "old-token new-token", true},
		{"tencent: receiver on the old token", "new-token", "old-token", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := callback.AppCommand
			if tt.sender == "new-token" {
				p = callback.Tencent
			}
			var calls atomic.Int64
			h := newHandler(t, receiver.Config{Protocol: p, Secret: tt.receiver})
			h.Handle("c", func(context.Context, *receiver.Request) (receiver.Decision, error) {
				calls.Add(1)
				return receiver.Deny(7, "seen"), nil
			})
			s := serve(t, h)
			d := newDispatcher(t, callback.Config{URL: s.URL, Protocol: p, Secret: tt.sender})
			r := d.Before(context.Background(), 1, "c", []byte(`{}`))
			if tt.accepted {
				require.NoError(t, r.Err)
				assert.Equal(t, callback.Deny, r.Action, "the handler's answer")
				assert.Equal(t, int64(1), calls.Load())
				return
			}
			assert.True(t, errors.Is(r.Err, callback.ErrStatus), "got %v, want ErrStatus (401)", r.Err)
			assert.Contains(t, r.Err.Error(), "401")
			assert.Zero(t, calls.Load(), "the handler must not see a forged callback")
		})
	}
}

// proxy is a real HTTP hop between a Dispatcher and a receiver that records
// each request and may change its body on the way.
type proxy struct {
	*httptest.Server
	mu     sync.Mutex
	last   *http.Request
	body   []byte
	tamper func([]byte) []byte
}

func newProxy(t *testing.T, to string, tamper func([]byte) []byte) *proxy {
	t.Helper()
	p := &proxy{tamper: tamper}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.last, p.body = r.Clone(context.Background()), body
		p.mu.Unlock()
		if p.tamper != nil {
			body = p.tamper(body)
		}
		status, answer := forward(r.Method, to+r.URL.RequestURI(), r.Header, body)
		w.WriteHeader(status)
		_, _ = w.Write(answer)
	}))
	t.Cleanup(p.Close)
	return p
}

// replay sends the last recorded request to url again, byte for byte.
func (p *proxy) replay(url string) (int, []byte) {
	p.mu.Lock()
	r, body := p.last, p.body
	p.mu.Unlock()
	return forward(r.Method, url+r.URL.RequestURI(), r.Header, body)
}

func forward(method, url string, header http.Header, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil
	}
	req.Header = header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return http.StatusBadGateway, nil
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(res.Body)
	return res.StatusCode, answer
}

func TestEndToEndTamperedBody(t *testing.T) {
	tamper := func(b []byte) []byte { return bytes.Replace(b, []byte("alice"), []byte("eve"), 1) }
	t.Run("seed: rejected", func(t *testing.T) {
		var got events
		h := newHandler(t, receiver.Config{Secret: secretNew})
		h.Handle("c", got.decide(receiver.Allow()))
		s := serve(t, h)
		p := newProxy(t, s.URL, tamper)
		var dead atomic.Int64
		d := newDispatcher(t, callback.Config{URL: p.URL, Secret: secretNew, DeadLetter: func(callback.Event, error) { dead.Add(1) }})

		r := d.Before(context.Background(), 1, "c", []byte(`{"from":"alice"}`))
		assert.True(t, errors.Is(r.Err, callback.ErrStatus), "got %v, want ErrStatus (401)", r.Err)
		require.NoError(t, d.After(context.Background(), 1, "c", []byte(`{"from":"alice"}`)))
		require.NoError(t, d.Close(context.Background()))
		assert.Empty(t, got.all(), "a tampered callback must not reach a handler")
		assert.Equal(t, int64(1), dead.Load(), "After's 401 is permanent: dead-lettered")
	})
	t.Run("tencent: Sign does not cover the body", func(t *testing.T) {
		// Tencent signs only token and time: a body changed on the way is
		// accepted. This is the format's limit, documented in README.
		var got events
		h := newHandler(t, receiver.Config{Protocol: callback.Tencent, Secret: tencentToken})
		h.Handle("c", got.decide(receiver.Allow()))
		s := serve(t, h)
		p := newProxy(t, s.URL, tamper)
		d := newDispatcher(t, callback.Config{URL: p.URL, Protocol: callback.Tencent, Secret: tencentToken})
		require.NoError(t, d.Before(context.Background(), 1, "c", []byte(`{"from":"alice"}`)).Err)
		reqs := got.all()
		require.Len(t, reqs, 1)
		assert.JSONEq(t, `{"from":"eve"}`, string(reqs[0].Body))
	})
}

func TestEndToEndReplay(t *testing.T) {
	tests := []struct {
		name     string
		protocol callback.Protocol
		secret   string
		later    time.Duration // past the tolerance
	}{
		{"seed", callback.AppCommand, secretNew, 5*time.Minute + 2*time.Second},
		{"tencent", callback.Tencent, tencentToken, time.Minute + 2*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			var offset atomic.Int64
			h := newHandler(t, receiver.Config{Protocol: tt.protocol, Secret: tt.secret, Dedup: 100})
			receiver.SetClock(h, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
			h.Handle("c", func(context.Context, *receiver.Request) (receiver.Decision, error) {
				n := calls.Add(1)
				return receiver.Deny(120000+int(n), "answer"), nil
			})
			s := serve(t, h)
			p := newProxy(t, s.URL, nil)
			d := newDispatcher(t, callback.Config{URL: p.URL, Protocol: tt.protocol, Secret: tt.secret})
			r := d.Before(context.Background(), 1, "c", []byte(`{"n":1}`))
			require.NoError(t, r.Err)
			require.Equal(t, 120001, r.Code)

			status, answer := p.replay(s.URL)
			assert.Equal(t, http.StatusOK, status, "a replay within the tolerance: %s", answer)
			assert.Contains(t, string(answer), "120001", "a replay gets the first answer")
			assert.Equal(t, int64(1), calls.Load(), "a replay must not reach the handler again")

			offset.Store(int64(tt.later))
			status, answer = p.replay(s.URL)
			assert.Equal(t, http.StatusUnauthorized, status, "a replay past the tolerance: %s", answer)
			assert.Contains(t, string(answer), "too old")
			assert.Equal(t, int64(1), calls.Load())
		})
	}
}

func TestEndToEndCheckProbe(t *testing.T) {
	for _, p := range []struct {
		proto  callback.Protocol
		secret string
	}{{callback.AppCommand, "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, {callback.Tencent, "token"}} {
		t.Run(p.proto.String(), func(t *testing.T) {
			var seen events
			h, err := receiver.New(receiver.Config{
				Protocol: p.proto,
				Secret:   p.secret,
				Default:  seen.decide(receiver.Deny(40001, "no")),
				Logger:   slog.New(slog.DiscardHandler),
			})
			require.NoError(t, err)
			h.Handle(callback.CheckCommand, seen.decide(receiver.Deny(40002, "no")))
			srv := httptest.NewServer(h)
			defer srv.Close()

			d := newDispatcher(t, callback.Config{URL: srv.URL, Protocol: p.proto, Secret: p.secret})
			require.NoError(t, d.Check(context.Background(), 1), "the probe is allowed")
			assert.Empty(t, seen.all(), "no handler sees the probe")

			wrong := newDispatcher(t, callback.Config{URL: srv.URL, Protocol: p.proto})
			require.ErrorIs(t, wrong.Check(context.Background(), 1), callback.ErrSignatureRefused, "the probe is verified")
		})
	}
}

// TestEndToEndEventIDPerEvent: the Before and the After of one message are
// two events. Given one WithEventID, the Before sends it with
// BeforeIDSuffix and the After as given, so that a signed receiver with
// Dedup handles both (before, it took the After for a replay of the
// Before, answered 409, and the After was dead-lettered); the App matches
// them by trimming the suffix.
func TestEndToEndEventIDPerEvent(t *testing.T) {
	var seen events
	h := newHandler(t, receiver.Config{Secret: secretNew, Dedup: 100})
	h.Handle("message.send.before", seen.decide(receiver.Allow()))
	h.Handle("message.send.after", seen.decide(receiver.Allow()))
	s := serve(t, h)
	var mu sync.Mutex
	var dead []error
	d := newDispatcher(t, callback.Config{URL: s.URL, Secret: secretNew, DeadLetter: func(_ callback.Event, err error) {
		mu.Lock()
		defer mu.Unlock()
		dead = append(dead, err)
	}})
	deadLetters := func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), dead...)
	}
	ctx := callback.WithEventID(context.Background(), "msg-1")
	r := d.Before(ctx, 1, "message.send.before", []byte(`{}`))
	require.NoError(t, r.Err)
	require.NoError(t, d.After(ctx, 1, "message.send.after", []byte(`{}`)))
	require.Eventually(t, func() bool { return len(seen.all()) == 2 }, 10*time.Second, 10*time.Millisecond, "both events of msg-1")
	var ids []string
	for _, r := range seen.all() {
		ids = append(ids, r.Command+" "+r.ID)
	}
	assert.Equal(t, []string{"message.send.before msg-1/before", "message.send.after msg-1"}, ids)
	assert.Equal(t, strings.TrimSuffix(seen.all()[0].ID, callback.BeforeIDSuffix), seen.all()[1].ID, "the App matches them")
	require.NoError(t, d.Close(context.Background()))
	assert.Empty(t, deadLetters())
}

// Package formattest is the conformance test of a wire format: one table
// of requests and answers, sent by a real callback.Dispatcher to a real
// receiver.Handler over HTTP, that every built-in format passes (AppCommand,
// Tencent and OpenIM run it in this package's own tests). Run it on a
// format of your own:
//
//	var Mine = format.Register("mine", mineFormat{})
//
//	func TestConformance(t *testing.T) {
//		formattest.Run(t, Mine, "")       // unsigned
//		formattest.Run(t, Mine, mySecret) // keyed, if the format signs
//	}
//
// It imports package callback, the IM server's side, as a test does; the
// format under test need not.
package formattest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/format"
	"github.com/imcallback/callback/receiver"
)

// body is the event every case sends: a JSON object, as every built-in
// format's events are, with a trailing newline kept byte for byte.
var body = []byte(`{"from":"alice","to":"bob","text":"hello","n":1}` + "\n")

// wait bounds how long a case waits for an After's delivery.
const wait = 30 * time.Second

// Run runs the conformance table on p, with secret as both sides' secret
// ("" for unsigned). Each case is a subtest. It checks that:
//
//   - p's text form reads back as p;
//   - Before reaches the receiver's handler with its command (even one
//     that needs escaping), its body byte for byte, the app (or 0, for a
//     format that carries none), the event's ID (its webhook-id) and the
//     endpoint URL's own query;
//   - an allow, a deny (code 5001, "blocked"), a drop and a rewrite
//     written by the receiver are read back by the Dispatcher as such,
//     with the Response's Protocol set to p, and Apply of a rewrite gives
//     JSON;
//   - an answer that is not the format's is callback.ErrBadAnswer, and the
//     Dispatcher then allows with p's own allow code and message;
//   - After is delivered once, retried after a failure with a fresh
//     signature, and one WithEventID serves a Before and an After that a
//     receiver with Dedup both handles;
//   - Dispatcher.Check passes;
//   - with a secret, a receiver refuses an unsigned request (401);
//   - Decode does not keep the answer it was lent.
func Run(t *testing.T, p format.Protocol, secret string) {
	t.Helper()
	t.Run("text", func(t *testing.T) {
		text, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back format.Protocol
		if err := back.UnmarshalText(text); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", text, err)
		}
		if back != p {
			t.Fatalf("%q read back as %v, want %v", text, back, p)
		}
	})
	t.Run("before reaches the handler", func(t *testing.T) {
		e := newEnv(t, p, secret, "?tenant=t1")
		const cmd = "msg.send before/a?b&c=d%"
		e.handle(cmd, receiver.Allow())
		ctx := callback.WithEventID(context.Background(), "ev-1")
		r := e.d.Before(ctx, 7, cmd, body)
		if r.Err != nil {
			t.Fatalf("Before: %v", r.Err)
		}
		got := e.only(t)
		if got.Command != cmd {
			t.Errorf("command %q, want %q", got.Command, cmd)
		}
		if !bytes.Equal(got.Body, body) {
			t.Errorf("body %q, want %q byte for byte", got.Body, body)
		}
		if got.AppID != 7 && got.AppID != 0 {
			t.Errorf("app %d, want 7 (or 0 for a format that carries none)", got.AppID)
		}
		if want := "ev-1" + format.BeforeIDSuffix; got.ID != want {
			t.Errorf("ID %q, want %q", got.ID, want)
		}
		if got.Query.Get("tenant") != "t1" {
			t.Errorf("the URL's own query was not kept: %v", got.Query)
		}
	})
	t.Run("allow", func(t *testing.T) {
		e := newEnv(t, p, secret, "")
		e.handle("cmd", receiver.Allow())
		r := e.d.Before(context.Background(), 1, "cmd", body)
		a := p.Allowed()
		if r.Err != nil || r.Action != format.Allow || r.Code != a.Code || r.Msg != a.Msg || r.Data != nil {
			t.Errorf("got %+v, want an allow %d %q without Data", r, a.Code, a.Msg)
		}
		if r.Protocol != p {
			t.Errorf("Response.Protocol %v, want %v", r.Protocol, p)
		}
	})
	t.Run("deny", func(t *testing.T) {
		e := newEnv(t, p, secret, "")
		e.handle("cmd", receiver.Deny(5001, "blocked"))
		r := e.d.Before(context.Background(), 1, "cmd", body)
		if r.Err != nil || r.Action != format.Deny || r.Code != 5001 || r.Msg != "blocked" {
			t.Errorf("got %+v, want a deny 5001 \"blocked\"", r)
		}
		if out, err := r.Apply(body); err != nil || !bytes.Equal(out, body) {
			t.Errorf("Apply of a deny: %q, %v; want the body unchanged", out, err)
		}
	})
	t.Run("drop", func(t *testing.T) {
		e := newEnv(t, p, secret, "")
		e.handle("cmd", receiver.Drop())
		r := e.d.Before(context.Background(), 1, "cmd", body)
		if r.Err != nil || r.Action == format.Allow {
			t.Errorf("got %+v, want a drop (or a deny, for a format without one)", r)
		}
	})
	t.Run("rewrite", func(t *testing.T) {
		e := newEnv(t, p, secret, "")
		e.handle("cmd", receiver.Rewrite(json.RawMessage(`{"text":"h*llo"}`)))
		r := e.d.Before(context.Background(), 1, "cmd", body)
		if r.Err != nil || r.Action != format.Allow || r.Data == nil {
			t.Fatalf("got %+v, want an allow with Data", r)
		}
		out, err := r.Apply(body)
		if err != nil || !json.Valid(out) {
			t.Errorf("Apply: %q, %v; want JSON", out, err)
		}
	})
	t.Run("bad answer fails open", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "<html>not an answer</html>")
		}))
		t.Cleanup(srv.Close)
		d := newDispatcher(t, callback.Config{URL: srv.URL + "/cb", Protocol: p, Secret: secret})
		r := d.Before(context.Background(), 1, "cmd", body)
		a := p.Allowed()
		if !errors.Is(r.Err, callback.ErrBadAnswer) || r.Action != format.Allow || r.Code != a.Code || r.Msg != a.Msg {
			t.Errorf("got %+v (Err %v), want an allow %d %q with Err wrapping ErrBadAnswer", r, r.Err, a.Code, a.Msg)
		}
	})
	t.Run("after delivered once, retried signed afresh", func(t *testing.T) {
		e := newEnv(t, p, secret, "")
		var mu sync.Mutex
		calls := 0
		e.h.Handle("cmd.after", func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			e.record(req)
			if calls == 1 {
				return receiver.Decision{}, errors.New("first attempt fails")
			}
			return receiver.Allow(), nil
		})
		ctx := callback.WithEventID(context.Background(), "ev-2")
		if err := e.d.After(ctx, 1, "cmd.after", body); err != nil {
			t.Fatalf("After: %v", err)
		}
		reqs := e.waitN(t, 2)
		for _, r := range reqs {
			if r.ID != "ev-2" || !bytes.Equal(r.Body, body) {
				t.Errorf("attempt with ID %q body %q, want ID ev-2 and the body", r.ID, r.Body)
			}
		}
		closeDispatcher(t, e.d)
		if got := len(e.all()); got != 2 {
			t.Errorf("%d attempts handled, want 2 (one failed, one delivered)", got)
		}
	})
	t.Run("one event ID for Before and After", func(t *testing.T) {
		e := newEnv(t, p, secret, "")
		e.handle("cmd", receiver.Allow())
		e.handle("cmd.after", receiver.Allow())
		ctx := callback.WithEventID(context.Background(), "msg-3")
		if r := e.d.Before(ctx, 1, "cmd", body); r.Err != nil {
			t.Fatalf("Before: %v", r.Err)
		}
		if err := e.d.After(ctx, 1, "cmd.after", body); err != nil {
			t.Fatalf("After: %v", err)
		}
		e.waitN(t, 2)
		closeDispatcher(t, e.d)
		if n := e.dead(); n != 0 {
			t.Errorf("%d dead letters, want none", n)
		}
	})
	t.Run("check", func(t *testing.T) {
		e := newEnv(t, p, secret, "")
		if err := e.d.Check(context.Background(), 1); err != nil {
			t.Errorf("Check: %v", err)
		}
		if n := len(e.all()); n != 0 {
			t.Errorf("a handler saw the probe %d times", n)
		}
	})
	if secret != "" {
		t.Run("unsigned request refused", func(t *testing.T) {
			e := newEnv(t, p, secret, "")
			e.handle("cmd", receiver.Deny(5001, "blocked"))
			d := newDispatcher(t, callback.Config{URL: e.url, Protocol: p})
			r := d.Before(context.Background(), 1, "cmd", body)
			if !errors.Is(r.Err, callback.ErrStatus) {
				t.Errorf("got Err %v, want a refusal (ErrStatus 401)", r.Err)
			}
			if n := len(e.all()); n != 0 {
				t.Errorf("the handler ran %d times for an unsigned request", n)
			}
		})
	}
	t.Run("decode keeps no answer", func(t *testing.T) {
		rc, err := p.Format().Receiver("", 0)
		if err != nil {
			t.Fatal(err)
		}
		sender, err := p.Format().Sender("")
		if err != nil {
			t.Fatal(err)
		}
		answer, err := rc.Encode(receiver.Rewrite(json.RawMessage(`{"text":"h*llo"}`)))
		if err != nil {
			t.Fatal(err)
		}
		d1, err := sender.Decode(answer)
		if err != nil {
			t.Fatal(err)
		}
		keep := bytes.Clone(d1.Data)
		for i := range answer {
			answer[i] = ' '
		}
		if !bytes.Equal(d1.Data, keep) {
			t.Errorf("Decision.Data changed with the answer buffer: it must be a copy")
		}
	})
}

// env is a receiver.Handler over httptest and a Dispatcher sending to it.
type env struct {
	h   *receiver.Handler
	d   *callback.Dispatcher
	url string

	mu    sync.Mutex
	reqs  []receiver.Request
	grew  chan struct{}
	nDead int
}

func newEnv(t *testing.T, p format.Protocol, secret, query string) *env {
	t.Helper()
	h, err := receiver.New(receiver.Config{Protocol: p, Secret: secret, Dedup: 1000, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &env{h: h, url: srv.URL + "/cb" + query, grew: make(chan struct{})}
	e.d = newDispatcher(t, callback.Config{URL: e.url, Protocol: p, Secret: secret,
		DeadLetter: func(callback.Event, error) {
			e.mu.Lock()
			e.nDead++
			e.mu.Unlock()
		}})
	return e
}

func (e *env) handle(cmd string, d receiver.Decision) {
	e.h.Handle(cmd, func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		e.record(req)
		return d, nil
	})
}

func (e *env) record(req *receiver.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reqs = append(e.reqs, *req)
	close(e.grew)
	e.grew = make(chan struct{})
}

func (e *env) all() []receiver.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]receiver.Request(nil), e.reqs...)
}

func (e *env) dead() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nDead
}

// only returns the one request the handlers saw.
func (e *env) only(t *testing.T) receiver.Request {
	t.Helper()
	reqs := e.all()
	if len(reqs) != 1 {
		t.Fatalf("the handlers saw %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// waitN waits until the handlers saw n requests.
func (e *env) waitN(t *testing.T, n int) []receiver.Request {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		e.mu.Lock()
		reqs, grew := append([]receiver.Request(nil), e.reqs...), e.grew
		e.mu.Unlock()
		if len(reqs) >= n {
			return reqs
		}
		select {
		case <-grew:
		case <-timer.C:
			t.Fatalf("the handlers saw %d requests within %v, want %d", len(reqs), wait, n)
		}
	}
}

func newDispatcher(t *testing.T, cfg callback.Config) *callback.Dispatcher {
	t.Helper()
	cfg.Logger = discard()
	cfg.RetryWaitMin, cfg.RetryWaitMax = time.Millisecond, 5*time.Millisecond
	d, err := callback.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDispatcher(t, d) })
	return d
}

// closeDispatcher closes d, letting its queue drain.
func closeDispatcher(t *testing.T, d *callback.Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.Close(ctx); err != nil && !errors.Is(err, callback.ErrClosed) {
		t.Errorf("Close: %v", err)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

package callback_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// tlsBackend is a real TLS App backend on httptest that allows every call,
// counts its TLS connections and the resumed ones, and records the HTTP
// version of each request.
type tlsBackend struct {
	*httptest.Server
	conns   atomic.Int64 // TCP connections accepted
	resumed atomic.Int64 // requests on a resumed TLS session
	proto   atomic.Int64 // ProtoMajor of the last request
	busy    inFlight     // requests being answered
}

func newTLSBackend(t *testing.T, h2 bool, answer http.HandlerFunc) *tlsBackend {
	t.Helper()
	b := &tlsBackend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.busy.enter()
		defer b.busy.leave()
		if r.TLS != nil && r.TLS.DidResume {
			b.resumed.Add(1)
		}
		b.proto.Store(int64(r.ProtoMajor))
		answer(w, r)
	}))
	b.EnableHTTP2 = h2
	// A burst makes Go's transport abandon some TLS handshakes it no
	// longer needs, and the server prints a line for each (hundreds in a
	// loaded run); the tests count what matters themselves.
	b.Config.ErrorLog = log.New(io.Discard, "", 0)
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.StartTLS()
	t.Cleanup(b.Close)
	return b
}

// roots is a TLS config that trusts only the backend's certificate.
func (b *tlsBackend) roots() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(b.Certificate())
	return &tls.Config{RootCAs: pool}
}

// firstWave holds a backend's first requests until every one of callers
// concurrent Before calls is either being answered or waiting for a
// connection of the Dispatcher's pool with no dial under way (told by the
// httptrace of ctx), then lets every request through. With the connection
// cap the first wave is about as many requests as the cap, the other
// callers wait for a connection; without it, every caller dials and its
// request is held with the others. Either way the peak of requests in
// flight is then set by the pool, not by how a loaded machine happens to
// schedule the burst.
type firstWave struct {
	callers int64
	busy    *inFlight
	waiting atomic.Int64 // callers between GetConn and GotConn
	dialing atomic.Int64 // TCP connects and TLS handshakes under way
	open    chan struct{}
	once    sync.Once
}

func newFirstWave(callers int, busy *inFlight) *firstWave {
	return &firstWave{callers: int64(callers), busy: busy, open: make(chan struct{})}
}

// ctx is the calls' ctx: it counts the callers waiting for a connection.
func (w *firstWave) ctx() context.Context {
	return httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GetConn:           func(string) { w.waiting.Add(1) },
		GotConn:           func(httptrace.GotConnInfo) { w.waiting.Add(-1) },
		ConnectStart:      func(string, string) { w.dialing.Add(1) },
		ConnectDone:       func(string, string, error) { w.dialing.Add(-1) },
		TLSHandshakeStart: func() { w.dialing.Add(1) },
		TLSHandshakeDone:  func(tls.ConnectionState, error) { w.dialing.Add(-1) },
	})
}

// hold is called by the backend's handler, inside busy. It gives up
// holding when the request is abandoned or after a deadline only a hang
// reaches: the test then measures a weaker peak, it does not hang.
func (w *firstWave) hold(r *http.Request) {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for {
		if w.dialing.Load() == 0 && w.busy.now.Load()+w.waiting.Load() >= w.callers {
			w.once.Do(func() { close(w.open) })
		}
		select {
		case <-w.open:
			return
		case <-r.Context().Done():
			return
		case <-deadline.C:
			return
		case <-poll.C:
		}
	}
}

// A cold start at concurrency 1024 against a healthy TLS backend uses at
// most MaxConnsPerHost connections at once (the other calls wait for one),
// and the calls that wait too long for a connection, if any, do not open
// the breaker: the wait is the Dispatcher's doing, not the App backend's.
func TestColdStartTLSBurst(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cap      int   // Config.MaxConnsPerHost
		wantMost int64 // requests in flight at once
	}{
		{"cap 64", 64, 64},
		{"default cap", 0, 16 + 256}, // Workers + 256
	} {
		t.Run(tt.name, func(t *testing.T) {
			var wave *firstWave
			b := newTLSBackend(t, false, func(w http.ResponseWriter, r *http.Request) {
				wave.hold(r)
				answerJSON(200, `{"code":200,"msg":"ok"}`)(w, r)
			})
			const callers = 1024
			wave = newFirstWave(callers, &b.busy)
			d, logs := newDispatcher(t, callback.Config{
				URL:             b.URL + "/callback",
				TLSConfig:       b.roots(),
				MaxConnsPerHost: tt.cap,
				// Generous: under -race on a busy 2-core machine, 272 TLS
				// handshakes starve the CPU and a 2 s call can time out
				// after its connection came (which rightly counts against
				// the breaker). This test is about the cap on a cold start;
				// TestPoolWaitDoesNotOpenBreaker is about pool waits.
				Timeout: 30 * time.Second,
			})

			got := runBeforeCtx(wave.ctx(), d, 2048, callers)

			ok := 0
			for i, r := range got {
				require.NotErrorIs(t, r.Err, callback.ErrBreakerOpen, "call %d: the burst must not open the breaker", i)
				if r.Err == nil {
					ok++
				}
			}
			assert.Positive(t, ok, "a healthy backend answers")
			// Over HTTP/1.1 a request in flight holds a connection the
			// client has not given up; the client gives one up only when
			// a call on it fails. So the requests answered at once stay
			// within the cap plus the failed calls, however the burst is
			// scheduled; the first wave reaches the cap. Without the cap
			// it is all 1,024 callers. The connections accepted over the
			// run are not bounded so: Go's transport abandons a dial whose
			// caller got a pooled connection first (logged).
			failed := int64(len(got) - ok)
			assert.LessOrEqual(t, b.busy.peak.Load(), tt.wantMost+failed,
				"requests in flight at once must stay within MaxConnsPerHost (plus one per failed call: %d)", failed)
			t.Logf("%d connections accepted, %d requests in flight at most, %d calls failed", b.conns.Load(), b.busy.peak.Load(), failed)
			for url, state := range d.Stats().Breakers {
				assert.Equal(t, "closed", state, "breaker of %s", url)
			}
			assert.NotContains(t, logs.String(), "circuit breaker open")
		})
	}
}

// Calls that time out while they wait for the only pooled connection are
// not the App backend's failures: without this, the 5 consecutive timeouts
// of the default breaker would open it against a healthy backend.
func TestPoolWaitDoesNotOpenBreaker(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // a healthy, not instant, App backend
		answerJSON(200, `{"code":200,"msg":"ok"}`)(w, r)
	})
	d, logs := newDispatcher(t, callback.Config{
		URL:             b.URL + "/callback",
		MaxConnsPerHost: 1,
		Timeout:         300 * time.Millisecond,
	})

	got := runBefore(d, 100, 100)

	timedOut := 0
	for i, r := range got {
		require.NotErrorIs(t, r.Err, callback.ErrBreakerOpen, "call %d: waiting for the pool must not open the breaker", i)
		if errors.Is(r.Err, context.DeadlineExceeded) {
			timedOut++
		}
	}
	require.Greater(t, timedOut, 10, "most of the 100 calls must time out waiting for the one connection")
	// A call that times out on the connection closes it, and a queued one
	// dials anew: one connection at a time, and at most one more in all
	// per failed call, however the calls are scheduled. Without the cap
	// the 100 calls open 100 connections and none times out.
	failed := int64(0)
	for _, r := range got {
		if r.Err != nil {
			failed++
		}
	}
	assert.LessOrEqual(t, b.busy.peak.Load(), 1+failed, "requests in flight at once, with a cap of one connection")
	assert.LessOrEqual(t, b.conns.Load(), 1+failed, "connections: the first, and one per failed call at most")
	assert.Equal(t, map[string]string{b.URL + "/callback": "closed"}, d.Stats().Breakers)
	assert.NotContains(t, logs.String(), "circuit breaker open")
}

// A call that reached the backend and timed out there still counts: a hung
// backend behind a cap of one connection opens the breaker.
func TestPoolCapHungBackendOpensBreaker(t *testing.T) {
	b := newBackend(t, hang)
	d, _ := newDispatcher(t, callback.Config{
		URL:             b.URL + "/callback",
		MaxConnsPerHost: 1,
		Timeout:         50 * time.Millisecond,
	})
	require.True(t, waitFor(10*time.Second, func() bool {
		return errors.Is(d.Before(context.Background(), 1, "x.before", []byte(`{}`)).Err, callback.ErrBreakerOpen)
	}), "timeouts on the connection to a hung backend must open the breaker")
}

// Connections beyond the first resume their TLS session, and the caller's
// TLSConfig is not changed.
func TestTLSSessionResumed(t *testing.T) {
	b := newTLSBackend(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // a new connection per call
		answerJSON(200, `{"code":200,"msg":"ok"}`)(w, r)
	})
	cfg := b.roots()
	d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/callback", TLSConfig: cfg})

	for i := range 3 {
		require.NoError(t, d.Before(context.Background(), 1, "x.before", []byte(`{}`)).Err, "call %d", i)
	}
	assert.Equal(t, int64(3), b.conns.Load(), "each call on its own connection")
	assert.Equal(t, int64(2), b.resumed.Load(), "the second and third handshakes resume the first's session")
	assert.Nil(t, cfg.ClientSessionCache, "the caller's TLSConfig must not be changed")
}

// HTTP/1.1 is the default, also to an h2-capable backend; Config.HTTP2
// negotiates HTTP/2.
func TestHTTP2Option(t *testing.T) {
	b := newTLSBackend(t, true, answerJSON(200, `{"code":200,"msg":"ok"}`))
	for _, tt := range []struct {
		http2 bool
		want  int64
	}{{false, 1}, {true, 2}} {
		// The caller's NextProtos offering h2 does not override HTTP2 false.
		cfg := b.roots()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/callback", TLSConfig: cfg, HTTP2: tt.http2})
		require.NoError(t, d.Before(context.Background(), 1, "x.before", []byte(`{}`)).Err)
		assert.Equal(t, tt.want, b.proto.Load(), "HTTP2: %v", tt.http2)
		assert.Equal(t, []string{"h2", "http/1.1"}, cfg.NextProtos, "the caller's TLSConfig is not changed")
	}
}

// Many concurrent calls share the capped pool and all succeed when the
// backend is quick: the wait for a connection is short.
func TestPoolCapAllSucceed(t *testing.T) {
	const callers = 64
	var wave *firstWave
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		wave.hold(r)
		answerJSON(200, `{"code":200,"msg":"ok"}`)(w, r)
	})
	wave = newFirstWave(callers, &b.busy)
	// The timeout only ends a real hang: a loaded machine may take
	// seconds to serve 400 calls through 4 connections.
	d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/callback", MaxConnsPerHost: 4, Timeout: time.Minute})
	for i, r := range runBeforeCtx(wave.ctx(), d, 400, callers) {
		require.NoError(t, r.Err, "call %d", i)
	}
	// Every call succeeded, so no connection was given up: the requests
	// answered at once stay within the cap by construction, and the first
	// wave reaches it (without the cap: all 64 callers). The connections
	// accepted may exceed it: Go's transport abandons a dial whose caller
	// got a pooled connection first.
	assert.LessOrEqual(t, b.busy.peak.Load(), int64(4), "requests in flight at once")
	t.Logf("%d connections accepted", b.conns.Load())
}

// Below the connection cap a Before call is not traced: the trace that
// tells a pool wait from the App's failure costs allocations on every
// message send, and only a call that may queue behind the cap needs it.
func TestBeforeTracedOnlyNearTheCap(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200,"msg":"ok"}`))
	allocs := func(cap int) float64 {
		d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/callback", MaxConnsPerHost: cap})
		body := []byte(`{"n":1}`)
		ctx := context.Background()
		require.NoError(t, d.Before(ctx, 1, "x.before", body).Err) // a warm connection
		return testing.AllocsPerRun(200, func() { _ = d.Before(ctx, 1, "x.before", body) })
	}
	untraced, traced := allocs(0), allocs(1) // default cap; a cap of 1 is below Workers
	assert.GreaterOrEqual(t, traced-untraced, 5.0, "allocations per Before: %v below the cap, %v near it", untraced, traced)
}

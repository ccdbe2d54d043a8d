package callback_test

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// received is one request as an App backend saw it.
type received struct {
	Method string
	Path   string
	Query  map[string][]string
	Header http.Header
	Body   []byte
}

// backend is a real App backend on httptest that records what it receives
// and answers with the handler it is given.
type backend struct {
	*httptest.Server
	mu    sync.Mutex
	got   []received
	conns atomic.Int64 // TCP connections accepted
	busy  inFlight     // requests being answered
}

// inFlight counts the requests a backend is answering and keeps the most
// it answered at once. Over HTTP/1.1 each of them holds a connection of
// its own that the client has not given up, which makes the peak a count
// that the client's connection cap bounds by construction, unlike the
// connections accepted over a run (Go's transport may replace one).
type inFlight struct {
	now, peak atomic.Int64
}

func (f *inFlight) enter() {
	n := f.now.Add(1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
}

func (f *inFlight) leave() { f.now.Add(-1) }

// testLog is a test server's ErrorLog: its lines go to the test's log,
// shown when the test fails (or with -v), not in every run's output.
func testLog(t testing.TB) *log.Logger { return log.New(tWriter{t}, "", 0) }

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func newBackend(t testing.TB, answer http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.busy.enter()
		defer b.busy.leave()
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.got = append(b.got, received{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), body})
		b.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		answer(w, r)
	}))
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Config.ErrorLog = testLog(t)
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *backend) requests() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.got...)
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

// answerJSON answers every request with status and body.
func answerJSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// hang never answers until the request is abandoned by the client.
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// newDispatcher builds a Dispatcher whose logs go to the returned buffer and
// closes it when the test ends.
func newDispatcher(t *testing.T, cfg callback.Config) (*callback.Dispatcher, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	}
	d, err := callback.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d, logs
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deadLetters collects what a Dispatcher dead-letters.
type deadLetters struct {
	mu   sync.Mutex
	evs  []callback.Event
	errs []error
}

func (l *deadLetters) hook(ev callback.Event, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
	l.errs = append(l.errs, err)
}

func (l *deadLetters) snapshot() ([]callback.Event, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]callback.Event(nil), l.evs...), append([]error(nil), l.errs...)
}

func (l *deadLetters) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

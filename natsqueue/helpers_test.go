package natsqueue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// quiet discards the Dispatchers' error logs: the tests fail deliveries on
// purpose.
var quiet = slog.New(slog.DiscardHandler)

// startServer starts a standalone JetStream server on a random loopback
// port, storing in dir, and shuts it down at the end of the test.
func startServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: dir,
		NoSigs: true, NoLog: true,
	})
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() { shutdown(srv) })
	require.True(t, srv.ReadyForConnections(10*time.Second), "server not ready")
	return srv
}

func shutdown(srv *server.Server) {
	srv.Shutdown()
	srv.WaitForShutdown()
}

// connect opens a client connection that is closed at the end of the test.
func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// node is one IM server node: a Dispatcher on a Queue.
type node struct {
	d *callback.Dispatcher
	q *natsqueue.Queue
}

// newNode starts a node on nc. cfg.URL must be set; the queue is added.
func newNode(t testing.TB, nc *nats.Conn, o natsqueue.Options, cfg callback.Config) *node {
	t.Helper()
	// Generous: a 3-server cluster on a loaded 2-core machine took over
	// 10 s to make a replicated consumer once.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := natsqueue.New(ctx, nc, o)
	require.NoError(t, err)
	cfg.Queue = q.ForDispatcher()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	d, err := callback.New(cfg)
	require.NoError(t, err)
	n := &node{d: d, q: q}
	t.Cleanup(func() { n.close(t, 10*time.Second) })
	return n
}

func (n *node) close(t testing.TB, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_ = n.d.Close(ctx) // the second Close of a node is a no-op
}

// hit is one request the App backend received.
type hit struct {
	id   string // webhook-id
	node string // the node query parameter, if any
	body string
	at   time.Time // when it arrived
}

// app is an App backend that records every request and answers with the
// status that its answer function gives (200 if nil).
type app struct {
	*httptest.Server
	mu     sync.Mutex
	hits   []hit
	answer func(h hit, seen int) int // seen: earlier requests with this id
	byID   map[string]int
	ok     map[string]bool      // bodies answered 2xx
	okAt   map[string]time.Time // when each was first answered 2xx
}

func newApp(t testing.TB, answer func(h hit, seen int) int) *app {
	a := &app{answer: answer, byID: map[string]int{}, ok: map[string]bool{}, okAt: map[string]time.Time{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := hit{id: r.Header.Get("Webhook-Id"), node: r.URL.Query().Get("node"), body: string(body), at: time.Now()}
		a.mu.Lock()
		seen := a.byID[h.id]
		a.byID[h.id]++
		a.hits = append(a.hits, h)
		a.mu.Unlock()
		status := http.StatusOK
		if a.answer != nil {
			status = a.answer(h, seen) // outside the lock: it may sleep
		}
		if status/100 == 2 {
			a.mu.Lock()
			if !a.ok[h.body] {
				a.ok[h.body] = true
				a.okAt[h.body] = time.Now()
			}
			a.mu.Unlock()
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"code":200,"msg":"ok"}`)
	}))
	t.Cleanup(a.Close)
	return a
}

// delivered returns how many distinct bodies were answered 2xx.
func (a *app) delivered() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ok)
}

// deliveredAt returns when body was first answered 2xx, if it was.
func (a *app) deliveredAt(body string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.okAt[body]
	return at, ok
}

// snapshot returns a copy of the requests so far.
func (a *app) snapshot() []hit {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]hit(nil), a.hits...)
}

// missing lists the bodies among body(0) to body(want-1) not answered
// 2xx, each with the number of requests the App saw for it: 0 tells an
// event never attempted from one that failed.
func (a *app) missing(want int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[string]int{}
	for _, h := range a.hits {
		seen[h.body]++
	}
	var b strings.Builder
	for n := range want {
		if k := body(n); !a.ok[string(k)] {
			fmt.Fprintf(&b, " %d(%d)", n, seen[string(k)])
		}
	}
	return b.String()
}

// waitDelivered waits until want distinct bodies were answered 2xx.
func (a *app) waitDelivered(t testing.TB, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for a.delivered() < want {
		if time.Now().After(deadline) {
			t.Logf("of bodies 0-%d, not delivered (attempts seen): %s", want-1, a.missing(want))
			require.FailNowf(t, "not delivered", "got %d events delivered within %v, want %d", a.delivered(), within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// body returns the JSON body of event n.
func body(n int) []byte { return []byte(`{"n":` + strconv.Itoa(n) + `}`) }

// number reads n back from a body.
func number(t testing.TB, b string) int {
	var v struct{ N int }
	require.NoError(t, json.Unmarshal([]byte(b), &v), "body %q", b)
	return v.N
}

// sendAll calls After for events from..to-1 from workers goroutines and
// fails the test on any error.
func sendAll(t testing.TB, d *callback.Dispatcher, from, to, workers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for n := from + w; n < to; n += workers {
				if err := d.After(ctx, 1, "message.send.after", body(n)); err != nil {
					errs <- fmt.Errorf("After(%d): %w", n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// Command durable shows After events surviving a restart of the IM server
// with the embedded durable queue: events are accepted while the App backend
// is down, the IM server stops, and after it starts again on the same
// directory every event reaches the App backend, with the webhook-id it was
// given before the restart.
//
//	go run ./examples/durable
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// appBackend is the customer's App backend: it refuses every After event
// (503) until up is set, and records the webhook-ids it accepted.
type appBackend struct {
	up  atomic.Bool
	mu  sync.Mutex
	ids map[string]string // webhook-id -> body
}

func (a *appBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Query().Get("command") == "message.send.before" {
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
		return
	}
	if !a.up.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	a.mu.Lock()
	a.ids[r.Header.Get("Webhook-Id")] = string(body)
	a.mu.Unlock()
	_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
}

func (a *appBackend) received() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ids)
}

func run() error {
	ctx := context.Background()
	app := &appBackend{ids: map[string]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/callback"

	// The durable queue's store: a real deployment keeps it, say in
	// /var/lib/im/callback; the example cleans up after itself.
	dir, err := os.MkdirTemp("", "imcallback-durable-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// start is the IM server starting: one line of config makes After
	// durable.
	start := func() (*callback.Dispatcher, error) {
		q, err := natsqueue.Embedded(ctx, dir, natsqueue.Options{
			AckWait: 2 * time.Second, // events waiting for a retry at shutdown come back this soon after a restart
		})
		if err != nil {
			return nil, err
		}
		return callback.New(callback.Config{
			URL:           url,
			Queue:         q.ForDispatcher(),
			RetrySchedule: []time.Duration{200 * time.Millisecond, time.Second, 2 * time.Second}, // production: the default, 5 s up to 10 h
			Logger:        slog.New(slog.DiscardHandler),                                         // the refused attempts are expected here
		})
	}

	d, err := start()
	if err != nil {
		return err
	}
	r := d.Before(ctx, 1001, "message.send.before", []byte(`{"from":"alice","to":"bob","text":"hi"}`))
	fmt.Println("before: allowed =", r.OK())

	sent := map[string]bool{}
	for i := range 5 {
		body := fmt.Sprintf(`{"from":"alice","to":"bob","seq":%d}`, i)
		if err := d.After(ctx, 1001, "message.send.after", []byte(body)); err != nil {
			return err
		}
		sent[body] = true
	}
	fmt.Println("after: 5 events stored while the App backend is down")

	if err := stop(ctx, d); err != nil {
		return err
	}
	fmt.Println("IM server stopped; delivered so far:", app.received())

	app.up.Store(true)
	d, err = start()
	if err != nil {
		return err
	}
	fmt.Println("IM server restarted on the same store; App backend up")
	deadline := time.Now().Add(30 * time.Second)
	for app.received() < len(sent) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := stop(ctx, d); err != nil {
		return err
	}

	app.mu.Lock()
	defer app.mu.Unlock()
	var got []string
	for _, body := range app.ids {
		got = append(got, body)
	}
	sort.Strings(got)
	for _, body := range got {
		fmt.Println("delivered after the restart:", body)
	}
	if len(got) != len(sent) {
		return fmt.Errorf("got %d events delivered, want %d", len(got), len(sent))
	}
	return nil
}

// stop is the IM server stopping: Close finishes the attempts in flight
// and leaves the other events in the store.
func stop(ctx context.Context, d *callback.Dispatcher) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return d.Close(ctx)
}

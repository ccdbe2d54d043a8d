package main

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// tenantEvents is how many after-events each app gets in the tenant case.
const tenantEvents = 2000

// tenantSenders is how many goroutines call After for each app.
const tenantSenders = 4

// tenantRows measures the tenant case: how long app 2's tenantEvents
// after-events take to be delivered alone, beside an app 1 whose backend
// hangs (accepts, never answers) and beside one that answers after 1.5 s,
// with the memory queue (durable false) or natsqueue.Embedded. One
// Dispatcher with a Resolver, defaults otherwise. It also returns app 2's
// Before p99 beside the hung app, and how many of app 2's Before calls
// failed in all runs.
func tenantRows(durable bool) (alone, hung, slow, beforeP99 time.Duration, beforeFailed int64) {
	alone, _, f1 := tenantRun(durable, nil)
	hung, beforeP99, f2 := tenantRun(durable, hang)
	slow, _, f3 := tenantRun(durable, slowAnswer)
	return alone, hung, slow, beforeP99, f1 + f2 + f3
}

// slowAnswer answers after 1.5 s.
func slowAnswer(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	t := time.NewTimer(1500 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
	case <-r.Context().Done():
	}
}

// tenantRun runs one tenant measurement; app1 nil means app 2 alone.
func tenantRun(durable bool, app1 http.HandlerFunc) (took, beforeP99 time.Duration, beforeFailed int64) {
	var got atomic.Int64
	app2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("command") == "message.send.after" {
			got.Add(1)
		}
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
	}))
	defer app2.Close()
	var a1 *httptest.Server
	if app1 != nil {
		a1 = httptest.NewServer(app1)
		defer a1.Close()
	}
	cfg := callback.Config{
		Logger: slog.New(slog.DiscardHandler),
		Resolver: callback.ResolverFunc(func(_ context.Context, id int) (callback.Endpoint, error) {
			if id == 1 && a1 != nil {
				return callback.Endpoint{URL: a1.URL + "/callback"}, nil
			}
			return callback.Endpoint{URL: app2.URL + "/callback"}, nil
		}),
	}
	if durable {
		dir, err := os.MkdirTemp("", "imcallback-bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		q, err := natsqueue.Embedded(context.Background(), dir, natsqueue.Options{})
		if err != nil {
			log.Fatal(err)
		}
		cfg.Queue = q.ForDispatcher()
	}
	d, err := callback.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer closeNow(d)

	ctx := context.Background()
	stop := make(chan struct{})
	var lat []time.Duration
	var failed atomic.Int64
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			start := time.Now()
			if d.Before(ctx, 2, command, body).Err != nil {
				failed.Add(1)
			}
			lat = append(lat, time.Since(start))
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	for s := range tenantSenders {
		for app := 1; app <= 2; app++ {
			if app == 1 && a1 == nil {
				continue
			}
			wg.Go(func() {
				for i := s; i < tenantEvents; i += tenantSenders {
					err := d.After(ctx, app, "message.send.after", []byte(`{"n":`+strconv.Itoa(i)+`}`))
					if err != nil && app == 2 {
						log.Fatalf("app 2's After: %v", err)
					}
				}
			})
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for got.Load() < tenantEvents && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	took = time.Since(start)
	close(stop)
	bg.Wait()
	wg.Wait()
	if got.Load() < tenantEvents {
		log.Fatalf("app 2: %d of %d delivered in %v", got.Load(), tenantEvents, took)
	}
	r := &run{lat: lat}
	return took, r.pct(99), failed.Load()
}

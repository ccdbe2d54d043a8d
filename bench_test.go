package callback_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imcallback/callback"
)

// benchBody is a typical message-send event.
var benchBody = []byte(`{"fromId":"alice","toId":"bob","msgId":"m-000001","text":"hello, how are you today?","ts":1700000000000}`)

// benchAnswer is the App backend's allow answer.
const benchAnswer = `{"code":200,"msg":"success"}`

// newBenchBackend starts a loopback App backend that reads each request and
// allows it.
func newBenchBackend(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchAnswer)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func newBenchDispatcher(b *testing.B, cfg callback.Config) *callback.Dispatcher {
	b.Helper()
	cfg.Logger = discardLogger()
	d, err := callback.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // dead-letter whatever is left at once
		_ = d.Close(ctx)
	})
	return d
}

// BenchmarkBefore measures one Before call against a loopback App backend,
// one call at a time. Compare with BenchmarkRawPost.
func BenchmarkBefore(b *testing.B) {
	d := newBenchDispatcher(b, callback.Config{URL: newBenchBackend(b).URL + "/callback"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := d.Before(ctx, 10000, "message.send.before", benchBody); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkBeforeParallel measures Before from GOMAXPROCS*16 goroutines.
// Compare with BenchmarkRawPostParallel.
func BenchmarkBeforeParallel(b *testing.B) {
	d := newBenchDispatcher(b, callback.Config{URL: newBenchBackend(b).URL + "/callback"})
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if r := d.Before(ctx, 10000, "message.send.before", benchBody); r.Err != nil {
				b.Error(r.Err)
				return
			}
		}
	})
}

// BenchmarkRawPost is the baseline of BenchmarkBefore: the same POST and
// answer read with a plain net/http client whose pool fits the load.
func BenchmarkRawPost(b *testing.B) {
	c := rawClient(64)
	defer c.CloseIdleConnections()
	url := newBenchBackend(b).URL + "/callback?appId=10000&command=message.send.before"
	b.ReportAllocs()
	for b.Loop() {
		rawPost(b, c, url)
	}
}

// BenchmarkRawPostParallel is the baseline of BenchmarkBeforeParallel.
func BenchmarkRawPostParallel(b *testing.B) {
	c := rawClient(256)
	defer c.CloseIdleConnections()
	url := newBenchBackend(b).URL + "/callback?appId=10000&command=message.send.before"
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rawPost(b, c, url)
		}
	})
}

func rawClient(idle int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = idle
	t.MaxIdleConnsPerHost = idle
	return &http.Client{Transport: t}
}

// rawPost sends the library's request (the same headers, a webhook-id of
// the same length) and reads the answer.
func rawPost(b *testing.B, c *http.Client, url string) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(benchBody))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "imcallback/1 (+https://github.com/imcallback/callback)")
	req.Header.Set("Webhook-Id", "msg_ABCDEFGHIJKLMNOP_1abc")
	res, err := c.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
}

// BenchmarkBeforeDisabled measures Before of a disabled command: the cost
// of the call itself, nothing is sent.
func BenchmarkBeforeDisabled(b *testing.B) {
	d := newBenchDispatcher(b, callback.Config{
		URL:      "http://127.0.0.1:1/callback",
		Commands: map[string]callback.Rule{"message.send.before": {Disabled: true}},
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d.Before(ctx, 10000, "message.send.before", benchBody)
	}
}

// BenchmarkAfter measures the call to After alone: its workers are held by
// an App backend that never answers, so no delivery competes for the CPU.
// Every batch of afterBatch events gets a fresh Dispatcher, built and closed
// with the timer stopped.
func BenchmarkAfter(b *testing.B) {
	benchAfter(b, func(int) context.Context { return context.Background() })
}

// BenchmarkAfterOrderKey is BenchmarkAfter with each event under one of
// 64 order keys (WithOrderKey, its context made once per key): the cost
// of queueing an event behind its key's pending one.
func BenchmarkAfterOrderKey(b *testing.B) {
	var ctxs [64]context.Context
	for i := range ctxs {
		ctxs[i] = callback.WithOrderKey(context.Background(), "conversation-"+strconv.Itoa(i))
	}
	benchAfter(b, func(i int) context.Context { return ctxs[i%len(ctxs)] })
}

// BenchmarkAfterRefused measures an After refused with ErrQueueFull: the
// only worker holds an event on an App backend that never answers and
// the queue of one is full, with the attempt log on (the default) and
// off. The log records only the first refusal of a burst.
func BenchmarkAfterRefused(b *testing.B) {
	for _, log := range []struct {
		name string
		size int
	}{{"log=on", 0}, {"log=off", -1}} {
		b.Run(log.name, func(b *testing.B) {
			held := make(chan struct{}, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				held <- struct{}{}
				<-r.Context().Done()
			}))
			b.Cleanup(srv.Close)
			d := newBenchDispatcher(b, callback.Config{URL: srv.URL + "/callback", Workers: 1, QueueSize: 1, Timeout: time.Hour, AttemptLog: log.size})
			ctx := context.Background()
			fill := func() {
				for {
					switch err := d.After(ctx, 10000, "message.send.after", benchBody); {
					case errors.Is(err, callback.ErrQueueFull):
						return
					case err != nil:
						b.Fatal(err)
					}
				}
			}
			fill()
			<-held // the worker holds an event for good
			fill()
			b.ReportAllocs()
			for b.Loop() {
				if err := d.After(ctx, 10000, "message.send.after", benchBody); !errors.Is(err, callback.ErrQueueFull) {
					b.Fatalf("After: got %v, want ErrQueueFull", err)
				}
			}
		})
	}
}

// benchAfter measures After with the context ctxOf gives the i-th call.
func benchAfter(b *testing.B, ctxOf func(i int) context.Context) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so the server notices a client giving up
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	const afterBatch = 1 << 16
	cfg := callback.Config{URL: srv.URL + "/callback", QueueSize: afterBatch, Logger: discardLogger()}
	var d *callback.Dispatcher
	closeD := func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = d.Close(ctx)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%afterBatch == 0 {
			b.StopTimer()
			if d != nil {
				closeD()
			}
			var err error
			if d, err = callback.New(cfg); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		i++
		if err := d.After(ctxOf(i), 10000, "message.send.after", benchBody); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	closeD()
}

// BenchmarkAfterDelivery measures After delivery end to end: b.N events
// queued and delivered to a loopback App backend (with the default 16
// workers), per event.
func BenchmarkAfterDelivery(b *testing.B) {
	var (
		mu   sync.Mutex
		seen int
		all  = make(chan struct{})
		want int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen++
		if seen == want {
			close(all)
		}
		mu.Unlock()
	}))
	defer srv.Close()
	want = b.N
	d := newBenchDispatcher(b, callback.Config{
		URL: srv.URL + "/callback", QueueSize: b.N,
		AfterLimit: callback.AfterLimit{Rate: -1}, // measure the library, not the limit
	})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := d.After(ctx, i, "message.send.after", benchBody); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatal("events not delivered within a minute")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBeforeBreakerOpen measures Before while the endpoint's breaker
// is open: the call fails open at once and sends nothing.
func BenchmarkBeforeBreakerOpen(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	d := newBenchDispatcher(b, callback.Config{URL: srv.URL, Breaker: callback.Breaker{Cooldown: time.Hour}})
	ctx := context.Background()
	for range 5 {
		d.Before(ctx, 10000, "message.send.before", benchBody)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := d.Before(ctx, 10000, "message.send.before", benchBody); !errors.Is(r.Err, callback.ErrBreakerOpen) {
			b.Fatalf("got %v, want ErrBreakerOpen", r.Err)
		}
	}
}

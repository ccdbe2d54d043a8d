package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
	"github.com/nats-io/nats.go"
)

// afterCost measures one After call with testing.Benchmark. The workers are
// held by a backend that never answers, so no delivery competes for the
// CPU; each batch gets a fresh Dispatcher, built with the timer stopped.
func afterCost() (ns float64, allocs, bytes int64) { return afterCostKeyed(0) }

// afterCostKeyed is afterCost with the events spread over keys order keys
// of one app (callback.WithOrderKey; their contexts made beforehand, as an
// IM server makes one per request); 0 keys is afterCost's unkeyed call.
func afterCostKeyed(keys int) (ns float64, allocs, bytes int64) {
	srv := hangingServer()
	defer srv.Close()
	const batch = 1 << 16
	cfg := callback.Config{URL: srv.URL + "/callback", QueueSize: batch, Logger: slog.New(slog.DiscardHandler)}
	ctxs := keyContexts(keys)
	r := testing.Benchmark(func(b *testing.B) {
		var d *callback.Dispatcher
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%batch == 0 {
				b.StopTimer()
				closeNow(d)
				var err error
				if d, err = callback.New(cfg); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			ctx := ctxs[i%len(ctxs)]
			i++
			if err := d.After(ctx, appID, "message.send.after", body); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		closeNow(d)
	})
	return float64(r.T.Nanoseconds()) / float64(r.N), r.AllocsPerOp(), r.AllocedBytesPerOp()
}

// keyContexts returns one context per order key, "conv:0" on; with no
// keys, one context without a key.
func keyContexts(keys int) []context.Context {
	if keys == 0 {
		return []context.Context{context.Background()}
	}
	ctxs := make([]context.Context, keys)
	for k := range ctxs {
		ctxs[k] = callback.WithOrderKey(context.Background(), "conv:"+strconv.Itoa(k))
	}
	return ctxs
}

// deliveryWorkers is the library's default Workers, and the raw pool's
// goroutines it is compared with.
const deliveryWorkers = 16

// delivered is one delivery round: events per second from the first After
// to the last event the backend read, the mean time of one After call
// (while delivery runs), this process's CPU time per event, and for
// natsqueue-proc the NATS server process's.
type delivered struct{ rate, callNs, cpuNs, serverCPUNs float64 }

// Delivery queues, and the raw pool they are compared with.
const (
	queueMemory   = "memory"
	queueNATS     = "natsqueue"
	queueNATSProc = "natsqueue-proc" // natsqueue.New, the NATS server in a child process
	queueRaw      = "raw"
)

// deliveryRound delivers n events through queue (memory, natsqueue
// Embedded, or raw: deliveryWorkers goroutines of a raw client POSTing
// the same requests) to be, from senders goroutines calling After (an IM
// server calls it from its request goroutines; one sender measures how
// long one After call takes, not how fast the queue delivers). The raw
// pool has no senders. Each event is another app's.
//
// Like a Before round, it first waits for the backend process to be idle
// (backend.settle) and returns an error prefixed with name, measuring
// nothing, when it is not; so does natsqueue-proc's NATS server process,
// fresh each round, once it has started.
func deliveryRound(be *backend, name, queue string, n, senders int) (delivered, error) {
	return keyedRound(be, name, queue, n, senders, keying{})
}

// keying is how a delivery round spreads its events over apps and order
// keys: each event another app's, without a key (the zero value), or all
// of one app's, event i under order key i mod keys (none with 0 keys).
type keying struct {
	oneApp bool
	keys   int
}

// keyedRound is deliveryRound with the events spread by k.
func keyedRound(be *backend, name, queue string, n, senders int, k keying) (delivered, error) {
	if err := be.settle(); err != nil {
		return delivered{}, fmt.Errorf("%s: %w", name, err)
	}
	url := be.URL + "/callback"
	if queue == queueRaw {
		cl := rawClient(deliveryWorkers, be.tls)
		defer cl.CloseIdleConnections()
		rawURL := url + "?appId=10000&command=message.send.after"
		var next atomic.Int64
		var wg sync.WaitGroup
		cpu, start := cpuTime(), time.Now()
		for range deliveryWorkers {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if err := post(cl, rawURL, body); err != nil {
						log.Fatal(err)
					}
				}
			})
		}
		wg.Wait()
		return delivered{rate: float64(n) / time.Since(start).Seconds(), cpuNs: float64(cpuTime()-cpu) / float64(n)}, nil
	}
	cfg := callback.Config{
		URL: url, TLSConfig: be.tls, Workers: deliveryWorkers, QueueSize: n, Logger: slog.New(slog.DiscardHandler),
		AfterLimit: callback.AfterLimit{Rate: -1}, // measure the library, not the limit
	}
	serverCPU := func() time.Duration { return 0 }
	switch queue {
	case queueNATS:
		dir, err := os.MkdirTemp("", "imcallback-bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		q, err := natsqueue.Embedded(context.Background(), dir, natsqueue.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			log.Fatal(err)
		}
		cfg.Queue = q.ForDispatcher()
	case queueNATSProc:
		ns := startProc(kindNATS) // a fresh store each round, as Embedded's
		defer ns.Close()
		if err := ns.settle(); err != nil {
			return delivered{}, fmt.Errorf("%s: NATS server: %w", name, err)
		}
		serverCPU = ns.cpu
		nc, err := nats.Connect(ns.URL, nats.Name("imcallback-bench"))
		if err != nil {
			log.Fatal(err)
		}
		defer nc.Close() // after closeNow(d), deferred below
		q, err := natsqueue.New(context.Background(), nc, natsqueue.Options{Logger: slog.New(slog.DiscardHandler)})
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
	want := be.received() + int64(n)
	ctxs := keyContexts(k.keys)
	var calls atomic.Int64 // nanoseconds spent in After, all senders
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu, scpu, start := cpuTime(), serverCPU(), time.Now()
	for range senders {
		wg.Go(func() {
			var spent time.Duration
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				app := tern(k.oneApp, appID, int(i))
				t := time.Now()
				if err := d.After(ctxs[int(i)%len(ctxs)], app, "message.send.after", body); err != nil {
					log.Fatal(err)
				}
				spent += time.Since(t)
			}
			calls.Add(int64(spent))
		})
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for be.received() < want {
		if time.Now().After(deadline) {
			log.Fatalf("%s delivered %d of %d events in 2 min", queue, be.received()-want+int64(n), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return delivered{
		rate:        float64(n) / time.Since(start).Seconds(),
		callNs:      float64(calls.Load()) / float64(n),
		cpuNs:       float64(cpuTime()-cpu) / float64(n),
		serverCPUNs: float64(serverCPU()-scpu) / float64(n),
	}, nil
}

// deliveryRounds runs the queues' delivery rounds of n events each (the
// natsqueue's durableN), from senders goroutines, alternating their order,
// after a warm-up round each. It returns an error naming the round when
// the backend process was not idle before one.
func deliveryRounds(be *backend, queues []string, n, durableN, rounds, senders int) (map[string][]delivered, error) {
	events := func(q string) int { return tern(q == queueNATS || q == queueNATSProc, durableN, n) }
	name := func(q, round string) string {
		return fmt.Sprintf("delivery %s, %d sender%s, %s", q, senders, tern(senders == 1, "", "s"), round)
	}
	for _, q := range queues {
		if _, err := deliveryRound(be, name(q, "warm-up round"), q, max(1, events(q)/10), senders); err != nil {
			return nil, err
		}
	}
	out := make(map[string][]delivered)
	for i := range rounds {
		order := slices.Clone(queues)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, q := range order {
			d, err := deliveryRound(be, name(q, fmt.Sprintf("round %d of %d", i+1, rounds)), q, events(q), senders)
			if err != nil {
				return nil, err
			}
			out[q] = append(out[q], d)
		}
	}
	return out, nil
}

// orderedRounds runs delivery rounds of one app's events on each of
// queues (n events each, the natsqueue's durableN), unkeyed and with each
// of keyCounts order keys, from senders goroutines, alternating their
// order, after a warm-up round each. The result is by orderedName. It
// returns an error naming the round when the backend process was not idle
// before one.
func orderedRounds(be *backend, queues []string, keyCounts []int, n, durableN, rounds, senders int) (map[string][]delivered, error) {
	type variant struct {
		queue string
		keys  int
	}
	var vs []variant
	for _, q := range queues {
		for _, keys := range append([]int{0}, keyCounts...) {
			vs = append(vs, variant{q, keys})
		}
	}
	events := func(q string) int { return tern(q == queueNATS || q == queueNATSProc, durableN, n) }
	round := func(v variant, round string, n int) (delivered, error) {
		name := fmt.Sprintf("ordered %s, %d keys, %d sender%s, %s", v.queue, v.keys, senders, tern(senders == 1, "", "s"), round)
		return keyedRound(be, name, v.queue, n, senders, keying{oneApp: true, keys: v.keys})
	}
	for _, v := range vs {
		if _, err := round(v, "warm-up round", max(1, events(v.queue)/10)); err != nil {
			return nil, err
		}
	}
	out := make(map[string][]delivered)
	for i := range rounds {
		order := slices.Clone(vs)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			d, err := round(v, fmt.Sprintf("round %d of %d", i+1, rounds), events(v.queue))
			if err != nil {
				return nil, err
			}
			name := orderedName(v.queue, v.keys)
			out[name] = append(out[name], d)
		}
	}
	return out, nil
}

// orderedName names the rounds of queue with keys order keys (0: unkeyed).
func orderedName(queue string, keys int) string { return queue + "/" + strconv.Itoa(keys) }

// field returns f of each of ds.
func field(ds []delivered, f func(delivered) float64) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = f(d)
	}
	return out
}

// queueMemoryUse returns the heap bytes per event of a Dispatcher whose
// queue holds n events of size bytes each, its workers held by a backend
// that never answers.
func queueMemoryUse(n, size int) float64 {
	srv := hangingServer()
	defer srv.Close()
	ev := []byte(`{"pad":"` + strings.Repeat("x", size-10) + `"}`)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	d, err := callback.New(callback.Config{URL: srv.URL, QueueSize: n, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	for i := range n {
		if err := d.After(context.Background(), i, "message.send.after", ev); err != nil {
			log.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	closeNow(d)
	return float64(m1.HeapAlloc-m0.HeapAlloc) / float64(n)
}

// hungBackend times hungCalls Before calls at concurrency hungConc against
// a backend that accepts connections and never answers, with the default
// 2 s timeout and breaker. It returns the time and the requests sent.
func hungBackend() (time.Duration, int64) {
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		hang(w, r)
	}))
	defer srv.Close()
	d, err := callback.New(callback.Config{URL: srv.URL, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer closeNow(d)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range hungConc {
		wg.Go(func() {
			for next.Add(1) <= hungCalls {
				d.Before(context.Background(), appID, command, body)
			}
		})
	}
	wg.Wait()
	return time.Since(start), sent.Load()
}

// hangingServer is an App backend that accepts requests and never answers.
func hangingServer() *httptest.Server { return httptest.NewServer(http.HandlerFunc(hang)) }

// hang reads the request and never answers. Reading the body to its end
// lets the server notice when the client gives up and end the handler.
func hang(_ http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

// closeNow closes d at once, dead-lettering whatever it still holds.
func closeNow(d *callback.Dispatcher) {
	if d == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = d.Close(ctx)
}

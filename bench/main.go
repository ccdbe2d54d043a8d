// Command bench measures the callback library against a raw net/http client
// calling the same loopback App backend in the same run, and prints a
// Markdown table. The machine may be shared and noisy, so the library and
// the raw client run in alternating rounds and each figure is read as a
// ratio against the raw client's.
//
//	go run ./bench [-calls 20000] [-rounds 3] [-events 50000] [-c 1,64,1024] [-backends http,tls,h2] [-only before,after,delivery,memory,hung]
//
// Before runs against each backend kind: http (plain HTTP/1.1), tls (HTTPS,
// HTTP/1.1 only) and h2 (HTTPS offering HTTP/2). The raw client is HTTP/1.1
// with a pool sized for the concurrency; against h2 the library is measured
// twice, with its default (HTTP/1.1) and with Config.HTTP2.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcallback/callback"
)

// body is a typical message-send event; answer is the App's allow answer.
var body = []byte(`{"fromId":"alice","toId":"bob","msgId":"m-000001","text":"hello, how are you today?","ts":1700000000000}`)

const (
	answer    = `{"code":200,"msg":"success"}`
	command   = "message.send.before"
	appID     = 10000
	hungCalls = 3000
	hungConc  = 64
)

func main() {
	testing.Init()
	calls := flag.Int("calls", 20000, "Before calls per round and concurrency")
	rounds := flag.Int("rounds", 3, "alternating rounds of library and raw client")
	events := flag.Int("events", 50000, "After events per delivery round")
	only := flag.String("only", "before,after,delivery,memory,hung,tenant", "comma-separated cases to run")
	concs := flag.String("c", "1,64", "comma-separated Before concurrencies")
	kinds := flag.String("backends", "http", "comma-separated Before backends: http, tls (HTTPS, HTTP/1.1 only), h2 (HTTPS with HTTP/2)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	run := func(name string) bool { return slices.Contains(strings.Split(*only, ","), name) }
	log.SetFlags(0)

	be := newBackend("http")
	defer be.Close()
	t := &table{}

	for _, kind := range strings.Split(*kinds, ",") {
		if !run("before") {
			break
		}
		kb := be
		if kind != "http" {
			kb = newBackend(kind)
		}
		for _, cs := range strings.Split(*concs, ",") {
			c, err := strconv.Atoi(cs)
			if err != nil {
				continue
			}
			for _, h2 := range tern(kind == "h2", []bool{false, true}, []bool{false}) {
				name := fmt.Sprintf("Before, %s, concurrency %d", kind, c)
				if kind == "h2" {
					name += tern(h2, ", library HTTP2: true", ", library HTTP/1.1 (default)")
				}
				lib, raw := beforeRounds(kb, c, *calls, *rounds, h2)
				t.row(name+": throughput", perSec(lib.rate()), perSec(raw.rate()), ratio(lib.rate()/raw.rate()), "≥ 0.95x")
				t.row(name+": p50 latency", dur(lib.pct(50)), dur(raw.pct(50)), ratio(float64(lib.pct(50))/float64(raw.pct(50))), tern(c == 1, "≤ 1.10x", ""))
				t.row(name+": p99 latency", dur(lib.pct(99)), dur(raw.pct(99)), ratio(float64(lib.pct(99))/float64(raw.pct(99))), "")
				t.row(name+": new connections, empty pool / later rounds",
					fmt.Sprintf("%d / %d", lib.warmConns, lib.maxConns), fmt.Sprintf("%d / %d", raw.warmConns, raw.maxConns), "",
					fmt.Sprintf("≤ %d (cap)", defaultConnCap))
				if lib.failed+raw.failed > 0 {
					t.row(name+": failed calls", strconv.Itoa(lib.failed), strconv.Itoa(raw.failed), "", "0")
				}
			}
		}
		if kb != be {
			kb.Close()
		}
	}

	if run("after") {
		ns, allocs, bytesPer := afterCost()
		t.row("After: cost per call", fmt.Sprintf("%.0f ns, %d allocs, %d B", ns, allocs, bytesPer), "", "", "< 1 µs, ≤ 2 allocs")
	}
	if run("delivery") {
		lib, raw := deliveryRounds(be, *events, *rounds)
		t.row("After delivery throughput (16 workers)", perSec(lib), perSec(raw), ratio(lib/raw), "≥ 0.95x")
	}
	if run("memory") {
		per := queueMemory(100_000, 200)
		t.row("After: memory per queued event, 200 B body", fmt.Sprintf("%.0f B (%.0f B overhead)", per, per-200), "", "", "")
	}
	if run("hung") {
		hung, sent := hungBackend()
		noBreaker := time.Duration(hungCalls/hungConc) * 2 * time.Second
		t.row(fmt.Sprintf("Hung backend: %d Before at concurrency %d, 2 s timeout", hungCalls, hungConc),
			fmt.Sprintf("%s (%d requests sent)", hung.Round(10*time.Millisecond), sent),
			fmt.Sprintf("~%s without breaker (computed)", noBreaker), ratio(hung.Seconds()/noBreaker.Seconds()), "a few seconds")
	}

	if run("tenant") {
		for _, durable := range []bool{false, true} {
			name := tern(durable, "natsqueue.Embedded", "memory queue")
			alone, hung, slow, p99, failed := tenantRows(durable)
			bound := func(d time.Duration) string {
				return tern(d < 2*alone+time.Second, "met", "NOT met")
			}
			t.row(fmt.Sprintf("Tenant, %s: app 2's %d events alone", name, tenantEvents), secs(alone), "", "", "")
			t.row(fmt.Sprintf("Tenant, %s: beside a hung app 1", name), secs(hung), "", ratio(hung.Seconds()/alone.Seconds()), "≤ 2x + 1 s: "+bound(hung))
			t.row(fmt.Sprintf("Tenant, %s: beside a slow app 1 (1.5 s)", name), secs(slow), "", ratio(slow.Seconds()/alone.Seconds()), "≤ 2x + 1 s: "+bound(slow))
			t.row(fmt.Sprintf("Tenant, %s: app 2's Before beside the hung app", name), "p99 "+dur(p99)+fmt.Sprintf(", %d failed", failed), "", "", "p99 < 500 ms, none fails")
		}
	}

	fmt.Printf("GOOS=%s GOARCH=%s CPUs=%d GOMAXPROCS=%d %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	t.print(os.Stdout)
}

// backend is a loopback App backend: it reads each request and allows
// it, and counts TCP connections. tls is the client configuration that
// trusts it (nil for plain HTTP).
type backend struct {
	*httptest.Server
	conns    atomic.Int64
	received atomic.Int64
	tls      *tls.Config
}

// newBackend starts a backend of kind http, tls (HTTPS, HTTP/1.1 only) or
// h2 (HTTPS, HTTP/2 offered).
func newBackend(kind string) *backend {
	b := &backend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		b.received.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}))
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	// Handshakes a client gives up on (the raw client's cold start at
	// concurrency 1024) are counted as failed calls, not logged one by one.
	b.Config.ErrorLog = log.New(io.Discard, "", 0)
	switch kind {
	case "http":
		b.Start()
		return b
	case "tls", "h2":
		b.EnableHTTP2 = kind == "h2"
		b.StartTLS()
		pool := x509.NewCertPool()
		pool.AddCert(b.Certificate())
		b.tls = &tls.Config{RootCAs: pool}
		return b
	}
	log.Fatalf("unknown backend %q", kind)
	return nil
}

// defaultConnCap is the library's default MaxConnsPerHost: Workers + 256.
const defaultConnCap = 16 + 256

// run is what one side measured over its rounds.
type run struct {
	lat       []time.Duration
	rates     []float64 // calls per second, per round
	maxConns  int64     // most new connections in one measured round
	warmConns int64     // new connections in the warm-up round, from an empty pool
	failed    int       // calls that failed (timed out, say), in every round
}

func (r *run) rate() float64 {
	s := slices.Clone(r.rates)
	slices.Sort(s)
	return s[len(s)/2] // median of the rounds
}

func (r *run) pct(p int) time.Duration {
	slices.Sort(r.lat)
	return r.lat[min(len(r.lat)-1, len(r.lat)*p/100)]
}

// beforeRounds runs Before and the raw client in alternating rounds of
// calls calls at concurrency c; the warm-up rounds start from an empty
// pool. With h2, the library offers HTTP/2.
func beforeRounds(be *backend, c, calls, rounds int, h2 bool) (lib, raw *run) {
	lib, raw = &run{}, &run{}
	url := be.URL + "/callback"
	rawURL := url + "?appId=10000&command=" + command
	// One Dispatcher and one raw client for all rounds: the warm-up round
	// fills their pools, which the measured rounds then reuse.
	d, err := callback.New(callback.Config{URL: url, TLSConfig: be.tls, HTTP2: h2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer closeNow(d)
	cl := rawClient(c, be.tls)
	defer cl.CloseIdleConnections()
	libCall := func() error { return d.Before(context.Background(), appID, command, body).Err }
	rawCall := func() error { return rawPost(cl, rawURL) }
	libRound := func(measure bool) { round(be, c, tern(measure, calls, calls/10), libCall, tern(measure, lib, nil)) }
	rawRound := func(measure bool) { round(be, c, tern(measure, calls, calls/10), rawCall, tern(measure, raw, nil)) }
	warmLib, warmRaw := &run{}, &run{}
	conns := be.conns.Load()
	round(be, c, max(c, calls/10), libCall, warmLib) // warm up, from an empty pool
	lib.warmConns, lib.failed = be.conns.Load()-conns, warmLib.failed
	conns = be.conns.Load()
	round(be, c, max(c, calls/10), rawCall, warmRaw)
	raw.warmConns, raw.failed = be.conns.Load()-conns, warmRaw.failed
	for i := range rounds {
		if i%2 == 0 {
			rawRound(true)
			libRound(true)
		} else {
			libRound(true)
			rawRound(true)
		}
	}
	return lib, raw
}

// round makes n calls from c goroutines and records them in into, if set.
func round(be *backend, c, n int, call func() error, into *run) {
	lats := make([]time.Duration, n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	conns := be.conns.Load()
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t := time.Now()
				if err := call(); err != nil {
					failed.Add(1)
				}
				lats[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if into == nil {
		return
	}
	into.failed += int(failed.Load())
	into.lat = append(into.lat, lats...)
	into.rates = append(into.rates, float64(n)/elapsed.Seconds())
	into.maxConns = max(into.maxConns, be.conns.Load()-conns)
}

// rawClient is a plain net/http HTTP/1.1 client whose pool is sized for
// c concurrent calls, trusting roots for HTTPS if set.
func rawClient(c int, roots *tls.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = c
	t.MaxIdleConnsPerHost = c
	t.TLSClientConfig = roots
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	return &http.Client{Transport: t, Timeout: 2 * time.Second}
}

// Headers the library sends, so the raw client's requests are the same
// bytes on the wire (the webhook-id has the library's length).
const (
	userAgent = "imcallback/1 (+https://github.com/imcallback/callback)"
	webhookID = "msg_ABCDEFGHIJKLMNOP_1abc"
)

// rawPost is the raw client's call: POST the event with the library's
// headers and read the answer.
func rawPost(c *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Webhook-Id", webhookID)
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, err = io.Copy(io.Discard, res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", res.StatusCode)
	}
	return err
}

// afterCost measures one After call with testing.Benchmark. The workers are
// held by a backend that never answers, so no delivery competes for the
// CPU; each batch gets a fresh Dispatcher, built with the timer stopped.
func afterCost() (ns float64, allocs, bytes int64) {
	srv := hangingServer()
	defer srv.Close()
	const batch = 1 << 16
	cfg := callback.Config{URL: srv.URL + "/callback", QueueSize: batch, Logger: slog.New(slog.DiscardHandler)}
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
			i++
			if err := d.After(context.Background(), appID, "message.send.after", body); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		closeNow(d)
	})
	return float64(r.T.Nanoseconds()) / float64(r.N), r.AllocsPerOp(), r.AllocedBytesPerOp()
}

// deliveryRounds measures After delivery (events delivered per second by
// the default 16 workers) against 16 goroutines of a raw client doing the
// same POSTs, in alternating rounds.
func deliveryRounds(be *backend, events, rounds int) (lib, raw float64) {
	const workers = 16
	url := be.URL + "/callback"
	rawURL := url + "?appId=10000&command=message.send.after"
	var libRates, rawRates []float64
	libRound := func(n int) float64 {
		d, err := callback.New(callback.Config{
			URL: url, Workers: workers, QueueSize: n, Logger: slog.New(slog.DiscardHandler),
			AfterLimit: callback.AfterLimit{Rate: -1}, // measure the library, not the limit
		})
		if err != nil {
			log.Fatal(err)
		}
		before := be.received.Load()
		start := time.Now()
		for i := range n {
			if err := d.After(context.Background(), i, "message.send.after", body); err != nil {
				log.Fatal(err)
			}
		}
		if err := d.Close(context.Background()); err != nil {
			log.Fatal(err)
		}
		elapsed := time.Since(start)
		if got := be.received.Load() - before; got != int64(n) {
			log.Fatalf("After delivered %d events, want %d", got, n)
		}
		return float64(n) / elapsed.Seconds()
	}
	rawRound := func(n int) float64 {
		cl := rawClient(workers, nil)
		defer cl.CloseIdleConnections()
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if err := rawPost(cl, rawURL); err != nil {
						log.Fatal(err)
					}
				}
			})
		}
		wg.Wait()
		return float64(n) / time.Since(start).Seconds()
	}
	libRound(events / 10) // warm up
	rawRound(events / 10)
	for i := range rounds {
		if i%2 == 0 {
			rawRates = append(rawRates, rawRound(events))
			libRates = append(libRates, libRound(events))
		} else {
			libRates = append(libRates, libRound(events))
			rawRates = append(rawRates, rawRound(events))
		}
	}
	slices.Sort(libRates)
	slices.Sort(rawRates)
	return libRates[len(libRates)/2], rawRates[len(rawRates)/2]
}

// queueMemory returns the heap bytes per event of a Dispatcher whose queue
// holds n events of size bytes each, its workers held by a backend that
// never answers.
func queueMemory(n, size int) float64 {
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

// table collects the rows of the printed table.
type table struct{ rows [][]string }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer) {
	fmt.Fprintln(w, "| Measure | imcallback | raw net/http | ratio | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

func perSec(v float64) string { return fmt.Sprintf("%.0f/s", v) }

func dur(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ratio(v float64) string { return fmt.Sprintf("%.2fx", v) }

func tern[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

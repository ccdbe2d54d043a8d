// Command metrics shows a Dispatcher's metrics through the OpenTelemetry
// SDK and its Prometheus exporter. It starts an App backend (one that
// denies spam, fails now and then and answers some After events with a 503
// first), a Dispatcher that reports to the SDK, and a /metrics endpoint; it
// drives some traffic, scrapes its own /metrics, prints the callback lines
// and exits 0.
//
// It traces too: the Dispatcher's spans go to an SDK TracerProvider with
// W3C trace context (propagation.TraceContext), the App backend continues
// the trace from each request's traceparent, and one message is sent
// inside an IM request's span, so its trace shows the whole path: IM
// request → Before → App handler, and each After attempt → App handler.
// The program prints that trace as a tree; -traces FILE writes every span
// as JSON with the SDK's stdout exporter ("-" for standard output), the
// place an OTLP exporter to Jaeger or Tempo would take.
//
//	go run ./examples/metrics            # traffic, a scrape, exit
//	go run ./examples/metrics -serve     # then keep serving /metrics until Ctrl-C
//	curl -s http://127.0.0.1:9464/metrics | grep imcallback_
//	go run ./examples/metrics -traces -  # and every span as JSON
//
// The core library depends only on the OpenTelemetry metric API; the SDK
// and the Prometheus exporter are this program's choice.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/imcallback/callback"
)

func main() {
	metricsAddr := flag.String("metrics", "127.0.0.1:9464", "address of the /metrics endpoint")
	appAddr := flag.String("app", "127.0.0.1:0", "address of the App backend")
	serve := flag.Bool("serve", false, "keep serving /metrics after the demo, until Ctrl-C")
	traces := flag.String("traces", "", `write every span as JSON to this file ("-": standard output)`)
	flag.Parse()
	log.SetFlags(0)

	spans := io.Discard
	switch *traces {
	case "":
	case "-":
		spans = os.Stdout
	default:
		f, err := os.Create(*traces)
		if err != nil {
			log.Fatalf("metrics: %v", err)
		}
		defer f.Close()
		spans = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, spans, *metricsAddr, *appAddr, *serve); err != nil {
		log.Fatalf("metrics: %v", err)
	}
}

// run is the program: it writes what it shows to out, and every span as
// JSON to spans.
func run(ctx context.Context, out, spans io.Writer, metricsAddr, appAddr string, serve bool) error {
	dm, err := startDemo(metricsAddr, appAddr, spans)
	if err != nil {
		return err
	}
	defer dm.close()
	d := dm.d

	if err := traffic(ctx, d); err != nil {
		return err
	}

	s := d.Stats()
	fmt.Fprintf(out, "Stats: before allowed=%d denied=%d failed_open=%d failed_closed=%d; after queued=%d delivered=%d retried=%d dead_lettered=%d\n",
		s.Total.Allowed, s.Total.Denied, s.Total.FailedOpen, s.Total.FailedClosed,
		s.Total.Queued, s.Total.Delivered, s.Total.Retried, s.Total.DeadLettered)

	url := dm.metricsURL
	lines, err := scrape(ctx, url)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Scraped %s:\n", url)
	for _, l := range lines {
		fmt.Fprintln(out, "  "+l)
	}
	// After the scrape, so that the counts above are the traffic's alone.
	if err := tracedMessage(ctx, out, dm); err != nil {
		return err
	}

	if serve {
		fmt.Fprintf(out, "Serving %s until Ctrl-C\n", url)
		<-ctx.Done()
	}
	return nil
}

// demo is the running example: an App backend, a Dispatcher that reports to
// an SDK MeterProvider and that provider's /metrics.
type demo struct {
	d          *callback.Dispatcher
	tp         *sdktrace.TracerProvider
	ended      *endedSpans
	metricsURL string // http://host:port/metrics
	close      func() // ends the Dispatcher (delivering what is queued), the servers and the provider
}

// startDemo starts the example's servers on metricsAddr and appAddr ("host:0"
// picks a port) and its Dispatcher.
func startDemo(metricsAddr, appAddr string, spans io.Writer) (*demo, error) {
	// The host application's side: an SDK MeterProvider whose reader is the
	// Prometheus exporter, registered on its own registry and served on
	// /metrics.
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// And an SDK TracerProvider: every span to the stdout exporter (JSON on
	// spans) and to the summary this program prints.
	exp, err := stdouttrace.New(stdouttrace.WithWriter(spans))
	if err != nil {
		return nil, err
	}
	ended := &endedSpans{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSpanProcessor(ended))
	shutdown := func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	}
	metricsSrv, metricsAddr, err := start(metricsAddr, mux)
	if err != nil {
		shutdown()
		return nil, err
	}
	appSrv, appAddr, err := start(appAddr, newApp(tp.Tracer("example/app")))
	if err != nil {
		metricsSrv.Close()
		shutdown()
		return nil, err
	}

	d, err := callback.New(callback.Config{
		URL:           "http://" + appAddr + "/callback",
		MeterProvider: mp,
		// The host application's tracing; nil would mean OpenTelemetry's
		// globals (otel.SetTracerProvider, otel.SetTextMapPropagator).
		TracerProvider: tp,
		Propagator:     propagation.TraceContext{},
		Commands: map[string]callback.Rule{
			"message.send.before": {},
			"friend.add.before":   {FailClosed: true},
			"message.send.after":  {},
		},
		RetryWaitMin: 10 * time.Millisecond, // retries show up within the demo
		RetryWaitMax: 50 * time.Millisecond,
		// Failures are expected here: summarise them once a second.
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
		LogInterval: time.Second,
	})
	if err != nil {
		appSrv.Close()
		metricsSrv.Close()
		shutdown()
		return nil, err
	}
	return &demo{d: d, tp: tp, ended: ended, metricsURL: "http://" + metricsAddr + "/metrics", close: func() {
		_ = d.Close(context.Background())
		appSrv.Close()
		metricsSrv.Close()
		shutdown()
	}}, nil
}

// traffic drives Before and After calls whose outcomes the App backend
// decides from the body, and waits until every After event has ended.
func traffic(ctx context.Context, d *callback.Dispatcher) error {
	for i := range 20 {
		text := "hello"
		switch {
		case i%5 == 0:
			text = "spam" // denied
		case i%7 == 0:
			text = "crash" // a 500: fails open
		}
		d.Before(ctx, 10000, "message.send.before", msg(text))
	}
	d.Before(ctx, 10000, "friend.add.before", msg("crash")) // fails closed
	const events = 10
	for i := range events {
		text := "hello"
		if i%4 == 0 {
			text = "busy" // a 503 first: retried
		}
		if err := d.After(ctx, 10000, "message.send.after", msg(text)); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := d.Stats().Total
		if s.Delivered+s.DeadLettered == events {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("after events still in flight after 10 s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func msg(text string) []byte {
	b, _ := json.Marshal(map[string]string{"fromId": "alice", "toId": "bob", "text": text})
	return b
}

// scrape fetches url and returns the lines of callback series worth
// showing: call counts, the queue and the duration histogram's totals.
func scrape(ctx context.Context, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	t := &http.Transport{}
	defer t.CloseIdleConnections()
	res, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	var lines []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "imcallback_calls_total{"),
			strings.HasPrefix(l, "imcallback_queue_"),
			strings.HasPrefix(l, "imcallback_active_requests{"),
			strings.HasPrefix(l, "imcallback_request_duration_seconds_count{"):
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return nil, errors.New("no imcallback series in /metrics")
	}
	return lines, nil
}

// newApp is the App backend: it denies "spam", answers "crash" with a 500
// and "busy" After events with a 503 on their first attempt. Each request
// is a server span continuing the sender's trace (a receiver.Handler does
// the extraction with receiver.Config.Propagator).
func newApp(tracer trace.Tracer) http.Handler {
	var mu sync.Mutex
	seen := map[string]bool{} // webhook-ids that got their 503
	mux := http.NewServeMux()
	mux.HandleFunc("POST /callback", func(w http.ResponseWriter, r *http.Request) {
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		_, span := tracer.Start(ctx, "app.callback", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		var ev struct{ Text string }
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		_ = json.Unmarshal(body, &ev)
		switch ev.Text {
		case "crash":
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		case "busy":
			mu.Lock()
			first := !seen[r.Header.Get("Webhook-Id")]
			seen[r.Header.Get("Webhook-Id")] = true
			mu.Unlock()
			if first {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if ev.Text == "spam" {
			_, _ = io.WriteString(w, `{"code":40001,"msg":"spam is not allowed"}`)
			return
		}
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
	})
	return mux
}

// start serves h on addr and returns the server and the address it got.
func start(addr string, h http.Handler) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr().String(), nil
}

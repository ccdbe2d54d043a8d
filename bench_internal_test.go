package callback

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// meterProvider is a MeterProvider that benchmarks compare, by name.
type meterProvider struct {
	Name string
	MP   metric.MeterProvider
}

// providers returns the no-op MeterProvider (what the global one is until a
// host installs an SDK) and the real SDK with a reader.
func providers(b testing.TB) []meterProvider {
	sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	return []meterProvider{
		{"metrics=noop", noop.NewMeterProvider()},
		{"metrics=sdk", sdk},
	}
}

// BenchmarkObserveBefore measures the instrumentation of one Before call
// alone (in-flight gauge, counter, histogram), without the network.
func BenchmarkObserveBefore(b *testing.B) {
	for _, p := range providers(b) {
		b.Run(p.Name, func(b *testing.B) {
			o, err := newObserver(p.MP, "http://app/cb", map[string]Rule{"message.send.before": {}}, func() (int, time.Time) { return 0, time.Time{} })
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			r := Response{Code: 200, Action: Allow}
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				o.beginBefore("message.send.before").endBefore(ctx, start, r)
			}
		})
	}
}

// BenchmarkAfter measures After's cost to the caller: the App backend
// holds the workers, and a drain goroutine empties the queue, so every call
// queues its event.
func BenchmarkAfter(b *testing.B) {
	for _, p := range providers(b) {
		b.Run(p.Name, func(b *testing.B) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			defer srv.Close()
			d, err := New(Config{URL: srv.URL, MeterProvider: p.MP, Workers: 1, QueueSize: 1 << 12,
				Commands: map[string]Rule{"message.send.after": {}}})
			if err != nil {
				b.Fatal(err)
			}
			drained, stop := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(drained)
				for {
					select {
					case <-stop:
						return
					default:
						d.mem.discardQueued()
						runtime.Gosched()
					}
				}
			}()
			body := []byte(`{"fromId":"alice","toId":"bob","text":"hello"}`)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := d.After(ctx, 1, "message.send.after", body); err != nil && err != ErrQueueFull {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if n := d.obs.command("message.send.after").counts[outRejectedFull].Load(); n > 0 {
				b.Logf("%d of %d calls found the queue full", n, b.N)
			}
			close(stop)
			<-drained
			close(release)
			_ = d.Close(ctx)
		})
	}
}

// discardQueued drops the events waiting in q's lanes, as if delivered.
func (q *memQueue) discardQueued() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.intake()
	for _, l := range q.ready {
		for l.len() > 0 {
			l.pop()
			l.held--
			q.n.Add(-1)
			l.e.held.Add(-1)
		}
		l.queued = false
	}
	q.ready = q.ready[:0]
}

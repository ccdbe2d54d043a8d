package callback_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/imcallback/callback"
)

// BenchmarkBeforeMetrics measures a Before call against a real httptest
// App backend with the no-op MeterProvider and with the OpenTelemetry SDK,
// in the same run, to show what the instrumentation costs. Compare with
// benchstat over -count runs.
func BenchmarkBeforeMetrics(b *testing.B) {
	for _, p := range callback.MetricProviders(b) {
		b.Run(p.Name, func(b *testing.B) {
			be := newBackend(b, answerJSON(200, `{"code":200}`))
			d, err := callback.New(callback.Config{URL: be.URL, MeterProvider: p.MP, Logger: discardLogger(),
				Commands: map[string]callback.Rule{"message.send.before": {}}})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = d.Close(context.Background()) }()
			body := []byte(`{"fromId":"alice","toId":"bob","text":"hello"}`)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r := d.Before(ctx, 1, "message.send.before", body); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}

// BenchmarkBeforeMetricsOverhead alternates Before calls on two
// Dispatchers, one with the no-op MeterProvider and one with the SDK, so
// that both see the same machine load, and reports the SDK's overhead in
// percent from the median call of each (the bound is 10; medians
// keep a shared machine's outliers out of the ratio).
func BenchmarkBeforeMetricsOverhead(b *testing.B) {
	be := newBackend(b, answerJSON(200, `{"code":200}`))
	ps := callback.MetricProviders(b)
	var ds [2]*callback.Dispatcher
	for i, p := range ps {
		d, err := callback.New(callback.Config{URL: be.URL, MeterProvider: p.MP, Logger: discardLogger(),
			Commands: map[string]callback.Rule{"message.send.before": {}}})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = d.Close(context.Background()) }()
		ds[i] = d
	}
	body := []byte(`{"fromId":"alice","toId":"bob","text":"hello"}`)
	ctx := context.Background()
	var took [2][]time.Duration
	n := 0
	for b.Loop() {
		for k := range 2 {
			i := (n + k) % 2 // alternate which goes first
			start := time.Now()
			if r := ds[i].Before(ctx, 1, "message.send.before", body); r.Err != nil {
				b.Fatal(r.Err)
			}
			took[i] = append(took[i], time.Since(start))
		}
		n++
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Nanoseconds())
	}
	noop, sdk := median(took[0]), median(took[1])
	b.ReportMetric(noop, "noop-p50-ns")
	b.ReportMetric(sdk, "sdk-p50-ns")
	b.ReportMetric(100*(sdk/noop-1), "overhead-%")
}

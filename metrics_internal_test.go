package callback

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestObserverExtraGauge checks the plug-in point for gauges kept elsewhere
// (a breaker's state per endpoint, a durable queue's depth): a gauge added
// before start is reported at each collection, with the endpoint, until
// close.
func TestObserverExtraGauge(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })

	o, err := newObserver(mp, "http://app/cb", nil, func() (int, time.Time) { return 0, time.Time{} })
	require.NoError(t, err)
	state := int64(2)
	attrs := make([]attribute.KeyValue, 1, 4) // spare capacity: the observer must not write into it
	attrs[0] = attribute.String("state", "open")
	require.NoError(t, o.addGauge(mp, "imcallback.breaker.state", "{state}", "test gauge",
		func(report func(int64, ...attribute.KeyValue)) { report(state, attrs...) }))
	require.NoError(t, o.start(mp))

	collect := func() []metricdata.DataPoint[int64] {
		var rm metricdata.ResourceMetrics
		require.NoError(t, r.Collect(context.Background(), &rm))
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == "imcallback.breaker.state" {
					return m.Data.(metricdata.Gauge[int64]).DataPoints
				}
			}
		}
		return nil
	}
	points := collect()
	require.Len(t, points, 1)
	assert.Equal(t, int64(2), points[0].Value)
	want := attribute.NewSet(attribute.String("state", "open"), attribute.String("endpoint", "http://app/cb"))
	assert.Equal(t, want, points[0].Attributes)
	assert.Equal(t, attribute.KeyValue{}, attrs[:2][1], "the observer must not append into the caller's slice")

	o.close()
	assert.Empty(t, collect(), "nothing is reported after close")
}

package callback_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/imcallback/callback"
)

// meter is a real OpenTelemetry SDK MeterProvider read by a ManualReader.
type meter struct {
	*sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
}

func newMeter(t *testing.T) *meter {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return &meter{MeterProvider: mp, reader: r}
}

// collected is one collection, searchable by metric name and attributes.
type collected map[string]metricdata.Metrics

func (m *meter) collect(t *testing.T) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, m.reader.Collect(context.Background(), &rm))
	c := collected{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			c[mt.Name] = mt
		}
	}
	return c
}

// matches reports whether set holds every key=value of want.
func matches(set attribute.Set, want map[string]string) bool {
	for k, v := range want {
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.AsString() != v {
			return false
		}
	}
	return true
}

// int64Value sums the int64 points of metric name whose attributes match
// want; ok is false if there is none.
func (c collected) int64Value(t *testing.T, name string, want map[string]string) (int64, bool) {
	t.Helper()
	mt, found := c[name]
	if !found {
		return 0, false
	}
	var points []metricdata.DataPoint[int64]
	switch data := mt.Data.(type) {
	case metricdata.Sum[int64]:
		points = data.DataPoints
	case metricdata.Gauge[int64]:
		points = data.DataPoints
	default:
		t.Fatalf("%s: got %T, want int64 data", name, mt.Data)
	}
	var sum int64
	ok := false
	for _, p := range points {
		if matches(p.Attributes, want) {
			sum += p.Value
			ok = true
		}
	}
	return sum, ok
}

// calls returns imcallback.calls for command and outcome (0 when absent).
func (c collected) calls(t *testing.T, command, outcome string) int64 {
	t.Helper()
	n, _ := c.int64Value(t, "imcallback.calls", map[string]string{"command": command, "outcome": outcome})
	return n
}

// durationCount returns how many durations were recorded for kind and
// outcome.
func (c collected) durationCount(t *testing.T, kind, outcome string) uint64 {
	t.Helper()
	mt, ok := c["imcallback.request.duration"]
	require.True(t, ok, "imcallback.request.duration must be reported")
	h, ok := mt.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "got %T, want a float64 histogram", mt.Data)
	var n uint64
	for _, p := range h.DataPoints {
		if matches(p.Attributes, map[string]string{"kind": kind, "outcome": outcome}) {
			n += p.Count
		}
	}
	return n
}

// scripted answers each request as its body's "do" field says: allow,
// deny, fail (500) or, for After, retry-once (503 on the first attempt).
func scripted(t *testing.T) *backend {
	var mu sync.Mutex
	tries := map[string]int{}
	return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ Do string }
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		tries[r.Header.Get("Webhook-Id")]++
		n := tries[r.Header.Get("Webhook-Id")]
		mu.Unlock()
		switch {
		case ev.Do == "deny":
			answerJSON(200, `{"code":40001,"msg":"no"}`)(w, r)
		case ev.Do == "fail", ev.Do == "retry-once" && n == 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case ev.Do == "reject":
			w.WriteHeader(http.StatusBadRequest)
		default:
			answerJSON(200, `{"code":200}`)(w, r)
		}
	})
}

func body(do string) []byte { return []byte(`{"do":"` + do + `"}`) }

func TestMetricsBeforeOutcomes(t *testing.T) {
	b := scripted(t)
	m := newMeter(t)
	d, _ := newDispatcher(t, callback.Config{
		URL:           b.URL + "/cb?token=secret",
		MeterProvider: m,
		Commands: map[string]callback.Rule{
			"message.send.before": {},
			"friend.add.before":   {FailClosed: true},
			"user.modify.before":  {Disabled: true},
		},
	})
	traffic := []struct {
		command, do string
		n           int
	}{
		{"message.send.before", "allow", 3},
		{"message.send.before", "deny", 2},
		{"message.send.before", "fail", 4},
		{"friend.add.before", "allow", 1},
		{"friend.add.before", "fail", 5},
		{"user.modify.before", "fail", 7}, // disabled: not sent, not counted
	}
	for _, tr := range traffic {
		for range tr.n {
			d.Before(context.Background(), 1, tr.command, body(tr.do))
		}
	}

	c := m.collect(t)
	want := []struct {
		command, outcome string
		n                int64
	}{
		{"message.send.before", "allowed", 3},
		{"message.send.before", "denied", 2},
		{"message.send.before", "failed_open", 4},
		{"message.send.before", "failed_closed", 0},
		{"friend.add.before", "allowed", 1},
		{"friend.add.before", "failed_closed", 5},
		{"friend.add.before", "failed_open", 0},
		{"user.modify.before", "allowed", 0},
		{"user.modify.before", "failed_open", 0},
	}
	for _, w := range want {
		t.Run(w.command+"/"+w.outcome, func(t *testing.T) {
			assert.Equal(t, w.n, c.calls(t, w.command, w.outcome), "imcallback.calls{command=%s,outcome=%s}", w.command, w.outcome)
		})
	}
	assert.Equal(t, uint64(4), c.durationCount(t, "before", "allowed"), "durations of allowed calls")
	assert.Equal(t, uint64(2), c.durationCount(t, "before", "denied"), "durations of denied calls")
	assert.Equal(t, uint64(4), c.durationCount(t, "before", "failed_open"), "durations of failed-open calls")
	assert.Equal(t, uint64(5), c.durationCount(t, "before", "failed_closed"), "durations of failed-closed calls")
	active, ok := c.int64Value(t, "imcallback.active_requests", map[string]string{"kind": "before"})
	assert.True(t, ok, "active_requests{kind=before} must be reported")
	assert.Zero(t, active, "no Before call is in flight")

	// Every point names the endpoint without its query.
	n, ok := c.int64Value(t, "imcallback.calls", map[string]string{"endpoint": b.URL + "/cb"})
	assert.True(t, ok, "points carry the endpoint attribute")
	assert.Equal(t, int64(15), n, "all calls, by endpoint")

	s := d.Stats()
	assert.Equal(t, callback.Counts{Allowed: 4, Denied: 2, FailedOpen: 4, FailedClosed: 5}, s.Total)
	assert.Equal(t, callback.Counts{Allowed: 1, FailedClosed: 5}, s.Commands["friend.add.before"])
	assert.NotContains(t, s.Commands, "user.modify.before", "a disabled command counts nothing")
}

func TestMetricsAfterOutcomes(t *testing.T) {
	b := scripted(t)
	m := newMeter(t)
	var dead deadLetters
	d, _ := newDispatcher(t, fastRetries(callback.Config{URL: b.URL, MeterProvider: m, Retries: 2, DeadLetter: dead.hook}))
	for _, do := range []string{"allow", "allow", "retry-once", "reject", "fail"} {
		require.NoError(t, d.After(context.Background(), 1, "message.send.after", body(do)))
	}
	// Collect before Close: Close stops the reporting.
	require.Eventually(t, func() bool {
		s := d.Stats().Total
		return s.Delivered+s.DeadLettered == 5 && dead.len() == 2
	}, 10*time.Second, time.Millisecond, "every event must be delivered or dead-lettered (reject and fail)")

	c := m.collect(t)
	const cmd = "message.send.after"
	assert.Equal(t, int64(5), c.calls(t, cmd, "queued"), "queued")
	assert.Equal(t, int64(3), c.calls(t, cmd, "delivered"), "delivered: 2 allow + retry-once")
	assert.Equal(t, int64(3), c.calls(t, cmd, "retried"), "retried: 1 for retry-once + 2 for fail; reject is not retried")
	assert.Equal(t, int64(2), c.calls(t, cmd, "dead_lettered"), "dead-lettered")
	assert.Equal(t, int64(0), c.calls(t, cmd, "rejected_full"), "rejected_full")
	assert.Equal(t, uint64(3), c.durationCount(t, "after", "delivered"), "2xx attempts")
	assert.Equal(t, uint64(5), c.durationCount(t, "after", "failed"), "failed attempts: 1 + 1 + 3")
	assert.Equal(t, 8, b.count(), "requests: 2 allow + 2 retry-once + 1 reject + 3 fail")

	assert.Equal(t, callback.Counts{Queued: 5, Delivered: 3, Retried: 3, DeadLettered: 2}, d.Stats().Total)
}

func TestMetricsQueueFullDepthAgeAndActive(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		answerJSON(200, `{"code":200}`)(w, r)
	})
	m := newMeter(t)
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, MeterProvider: m, Workers: 1, QueueSize: 2})

	// The one worker takes the first event and hangs on it; two more fill
	// the queue; the next two are refused.
	require.NoError(t, d.After(context.Background(), 1, "group.create.after", []byte(`{}`)))
	require.Eventually(t, func() bool { return b.count() == 1 }, 5*time.Second, time.Millisecond, "the worker must be sending")
	require.NoError(t, d.After(context.Background(), 1, "group.create.after", []byte(`{}`)))
	require.NoError(t, d.After(context.Background(), 1, "group.create.after", []byte(`{}`)))
	for range 2 {
		require.ErrorIs(t, d.After(context.Background(), 1, "group.create.after", []byte(`{}`)), callback.ErrQueueFull)
	}
	// A Before call in flight too.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() { d.Before(context.Background(), 1, "message.send.before", []byte(`{}`)) })
	require.Eventually(t, func() bool { return b.count() == 2 }, 5*time.Second, time.Millisecond, "the Before call must be sent")
	require.Eventually(t, func() bool { return d.Stats().OldestQueued >= 20*time.Millisecond }, 10*time.Second, time.Millisecond,
		"the queued events must age") // measured by Stats, then checked in the metrics

	c := m.collect(t)
	assert.Equal(t, int64(3), c.calls(t, "group.create.after", "queued"))
	assert.Equal(t, int64(2), c.calls(t, "group.create.after", "rejected_full"))
	depth, ok := c.int64Value(t, "imcallback.queue.depth", nil)
	assert.True(t, ok, "queue.depth must be reported")
	assert.Equal(t, int64(2), depth, "queue.depth")
	for kind, want := range map[string]int64{"before": 1, "after": 1} {
		got, _ := c.int64Value(t, "imcallback.active_requests", map[string]string{"kind": kind})
		assert.Equal(t, want, got, "active_requests{kind=%s}", kind)
	}
	age := c["imcallback.queue.oldest_age"].Data.(metricdata.Gauge[float64]).DataPoints
	require.Len(t, age, 1)
	assert.GreaterOrEqual(t, age[0].Value, 0.020, "the oldest event has waited at least the 20 ms slept")
	assert.Less(t, age[0].Value, 300.0, "and not absurdly long (the wait above lasts 10 s at most)")

	s := d.Stats()
	assert.Equal(t, 2, s.QueueDepth)
	assert.GreaterOrEqual(t, s.OldestQueued, 20*time.Millisecond)
	assert.Equal(t, 1, s.ActiveBefore)
	assert.Equal(t, 1, s.ActiveAfter)

	unblock()
	wg.Wait()
	require.NoError(t, d.Close(context.Background()))
	s = d.Stats()
	assert.Equal(t, callback.Counts{Allowed: 1, Queued: 3, RejectedFull: 2, Delivered: 3}, s.Total)
	assert.Zero(t, s.QueueDepth)
	assert.Zero(t, s.OldestQueued)
	assert.Zero(t, s.ActiveBefore+s.ActiveAfter)
}

func TestMetricsCommandLabelsAreBounded(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	m := newMeter(t)
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, MeterProvider: m,
		Commands: map[string]callback.Rule{"configured.before": {}}})
	d.Before(context.Background(), 1, "configured.before", []byte(`{}`))
	for i := range 100 {
		d.Before(context.Background(), 1, fmt.Sprintf("app.supplied.%d", i), []byte(`{}`))
	}
	d.Before(context.Background(), 1, "", []byte(`{}`)) // fails open: empty command

	c := m.collect(t)
	labels := map[string]bool{}
	for _, p := range c["imcallback.calls"].Data.(metricdata.Sum[int64]).DataPoints {
		v, _ := p.Attributes.Value("command")
		labels[v.AsString()] = true
	}
	assert.Len(t, labels, 1+64+1, "the configured command, the first 64 others and _other")
	assert.Equal(t, int64(1), c.calls(t, "configured.before", "allowed"))
	assert.Equal(t, int64(1), c.calls(t, "app.supplied.63", "allowed"), "the 64th other command has its label")
	assert.Equal(t, int64(36), c.calls(t, "_other", "allowed"), "the rest share _other")
	assert.Equal(t, int64(1), c.calls(t, "_other", "failed_open"), "an empty command counts as _other")
	assert.Equal(t, callback.Counts{Allowed: 101, FailedOpen: 1}, d.Stats().Total)
}

func TestMetricsStopAtClose(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	m := newMeter(t)
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, MeterProvider: m})
	d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	require.NotZero(t, m.collect(t).calls(t, "message.send.before", "allowed"))
	require.NoError(t, d.Close(context.Background()))
	_, ok := m.collect(t).int64Value(t, "imcallback.calls", nil)
	assert.False(t, ok, "a closed Dispatcher no longer reports its counters: the MeterProvider must not keep it alive")
	assert.Equal(t, uint64(1), d.Stats().Total.Allowed, "Stats still works after Close")
}

func TestMetricsNoProviderUsesGlobalNoop(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	require.NoError(t, r.Err)
	assert.Equal(t, uint64(1), d.Stats().Total.Allowed, "Stats counts without any SDK")
}

func TestMetricsDurationBucketsAndTimeout(t *testing.T) {
	b := newBackend(t, hang)
	m := newMeter(t)
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, MeterProvider: m,
		Commands: map[string]callback.Rule{"message.send.before": {Timeout: 100 * time.Millisecond}}})
	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	require.ErrorIs(t, r.Err, context.DeadlineExceeded)

	h := m.collect(t)["imcallback.request.duration"].Data.(metricdata.Histogram[float64])
	require.Len(t, h.DataPoints, 1)
	p := h.DataPoints[0]
	assert.Equal(t, []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2}, p.Bounds,
		"buckets resolve 1 ms to 2 s")
	assert.Equal(t, uint64(1), p.Count)
	assert.GreaterOrEqual(t, p.Sum, 0.1, "a call that timed out at 100 ms took at least 0.1 s")
	assert.Less(t, p.Sum, 30.0, "and returned within a bound only a hang reaches")
	outcome, _ := p.Attributes.Value("outcome")
	assert.Equal(t, "failed_open", outcome.AsString())
}

// The breaker state of each endpoint is a gauge (0 closed, 2 open) and is in
// Stats, keyed by the endpoint's URL without its query, which is only
// hinted at by a hash (endpoints differing in the query are apart).
func TestMetricsBreakerState(t *testing.T) {
	m := newMeter(t)
	b := newBackend(t, answerJSON(500, `{}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/cb?token=x", MeterProvider: m})
	h := sha256.Sum256([]byte("token=x"))
	url := b.URL + "/cb?#" + hex.EncodeToString(h[:4])

	d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	v, ok := m.collect(t).int64Value(t, "imcallback.breaker.state", map[string]string{"endpoint": url})
	require.True(t, ok, "no breaker state for %s", url)
	assert.Equal(t, int64(0), v, "closed after one failure")
	assert.Equal(t, map[string]string{url: "closed"}, d.Stats().Breakers)

	for range 5 { // the default opens after 5 failures in a row
		d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	}
	v, _ = m.collect(t).int64Value(t, "imcallback.breaker.state", map[string]string{"endpoint": url})
	assert.Equal(t, int64(2), v, "open")
	assert.Equal(t, map[string]string{url: "open"}, d.Stats().Breakers)
}

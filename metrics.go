package callback

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// meterName is the instrumentation scope of the Dispatcher's instruments.
const meterName = "github.com/imcallback/callback"

// Metric names, units and attribute keys. See the README's Observability
// section for the table.
const (
	metricCalls         = "imcallback.calls"
	metricDuration      = "imcallback.request.duration"
	metricActive        = "imcallback.active_requests"
	metricQueueDepth    = "imcallback.queue.depth"
	metricQueueAge      = "imcallback.queue.oldest_age"
	metricBreakerState  = "imcallback.breaker.state"
	attrKind            = "kind"
	attrCommand         = "command"
	attrOutcome         = "outcome"
	attrEndpoint        = "endpoint"
	kindBefore          = "before"
	kindAfter           = "after"
	otherCommand        = "_other"
	maxCommandLabels    = 64  // command names admitted as attribute values beyond the configured ones
	maxCommandLabelSize = 128 // longer command names count as otherCommand
)

// durationBuckets resolve 1 ms to 2 s (the default timeout), in seconds.
var durationBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2}

// outcome is what became of one callback; its name is the outcome attribute.
type outcome uint8

const (
	// Before outcomes: one per Before call that sent (or tried to send) a
	// request.
	outAllowed outcome = iota
	outDenied
	outDropped
	outFailedOpen
	outFailedClosed
	// Before under a shadow rule: the App backend's answer, not enforced.
	outShadowAllowed
	outShadowDenied
	outShadowDropped
	// After outcomes: queued or rejected per After call, delivered or
	// dead-lettered per event, retried per retry attempt.
	outQueued
	outRejectedFull
	outDelivered
	outRetried
	outDeadLettered
	numOutcomes
	// outAttemptFailed labels only the duration of an After attempt that
	// did not get a 2xx answer; no counter has it.
	outAttemptFailed    = numOutcomes
	numDurationOutcomes = numOutcomes + 1
)

var outcomeNames = [numDurationOutcomes]string{
	"allowed", "denied", "dropped", "failed_open", "failed_closed",
	"shadow_allowed", "shadow_denied", "shadow_dropped",
	"queued", "rejected_full", "delivered", "retried", "dead_lettered",
	"failed",
}

func (o outcome) kind() string {
	if o < outQueued {
		return kindBefore
	}
	return kindAfter
}

// commandStats holds the counters of one command label and its
// precomputed attribute options, so that recording allocates nothing.
type commandStats struct {
	name   string
	o      *observer
	counts [numOutcomes]atomic.Uint64
	// record[out] is the option list of a duration with outcome out.
	record [numDurationOutcomes][]metric.RecordOption
	// observe[out] is the option of the calls counter with outcome out.
	observe [numOutcomes]metric.ObserveOption
}

// observer keeps a Dispatcher's counters and gauges and reports them to its
// MeterProvider. Counters are atomics read by Stats and by the meter's
// callback, so the hot path costs the same with or without an SDK; only the
// duration histogram is recorded synchronously.
type observer struct {
	endpoint string

	configured map[string]*commandStats // read-only after newObserver
	// seen holds commands admitted since New, up to maxCommandLabels;
	// copy-on-write under mu.
	seen  atomic.Pointer[map[string]*commandStats]
	mu    sync.Mutex // guards writes to seen, and regs
	other *commandStats

	active [2]atomic.Int64 // requests in flight: [0] Before, [1] After attempts
	// queueState returns the memory queue's depth and when its oldest
	// event was queued (zero when empty or with a Config.Queue).
	queueState func() (int, time.Time)

	duration  metric.Float64Histogram
	calls     metric.Int64ObservableCounter
	activeG   metric.Int64ObservableUpDownCounter
	depth     metric.Int64ObservableUpDownCounter
	age       metric.Float64ObservableGauge
	activeOpt [2]metric.ObserveOption
	endOpt    metric.ObserveOption

	// gauges are the extra gauges other parts register with addGauge
	// before start; regs (guarded by mu) are unregistered by close.
	gauges []gauge
	regs   []metric.Registration
}

// gauge is an extra int64 gauge reported with the observer's instruments,
// for state that lives elsewhere in the Dispatcher (a breaker per endpoint,
// a durable queue's depth). observe reports each current value with its
// attributes (without endpoint: it is added).
type gauge struct {
	inst    metric.Int64ObservableGauge
	observe func(report func(v int64, attrs ...attribute.KeyValue))
}

// newObserver makes the observer of a Dispatcher calling endpoint, with a
// label for each configured command. It creates the instruments on mp's
// meter (Config.validate chose mp: never nil); start registers the
// callback that reports the gauges and counters.
func newObserver(mp metric.MeterProvider, endpoint string, commands map[string]Rule, queueState func() (int, time.Time)) (*observer, error) {
	o := &observer{
		endpoint:   endpoint,
		configured: make(map[string]*commandStats, len(commands)),
		queueState: queueState,
	}
	for name := range commands {
		o.configured[name] = o.newCommand(name)
	}
	o.other = o.newCommand(otherCommand)
	o.seen.Store(&map[string]*commandStats{})
	ep := attribute.String(attrEndpoint, endpoint)
	o.activeOpt[0] = metric.WithAttributeSet(attribute.NewSet(ep, attribute.String(attrKind, kindBefore)))
	o.activeOpt[1] = metric.WithAttributeSet(attribute.NewSet(ep, attribute.String(attrKind, kindAfter)))
	o.endOpt = metric.WithAttributeSet(attribute.NewSet(ep))

	m := mp.Meter(meterName)
	var errs [5]error
	o.duration, errs[0] = m.Float64Histogram(metricDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of a Before call, or of one After attempt up to the answer's headers."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	o.calls, errs[1] = m.Int64ObservableCounter(metricCalls,
		metric.WithUnit("{call}"),
		metric.WithDescription("Callbacks by kind, command and outcome; retried counts each retry attempt."))
	o.activeG, errs[2] = m.Int64ObservableUpDownCounter(metricActive,
		metric.WithUnit("{request}"),
		metric.WithDescription("Requests to the App backend in flight: Before calls and After attempts."))
	o.depth, errs[3] = m.Int64ObservableUpDownCounter(metricQueueDepth,
		metric.WithUnit("{event}"),
		metric.WithDescription("After events waiting in the memory queue, for a worker or a retry's time."))
	o.age, errs[4] = m.Float64ObservableGauge(metricQueueAge,
		metric.WithUnit("s"),
		metric.WithDescription("How long the oldest After event in the queue has waited; 0 when the queue is empty."))
	o.fillNoop()
	return o, errors.Join(errs[:]...)
}

// fillNoop replaces the instruments a MeterProvider failed to return with
// no-op ones, so that recording never meets a nil.
func (o *observer) fillNoop() {
	if o.duration == nil {
		o.duration = noop.Float64Histogram{}
	}
	if o.calls == nil {
		o.calls = noop.Int64ObservableCounter{}
	}
	if o.activeG == nil {
		o.activeG = noop.Int64ObservableUpDownCounter{}
	}
	if o.depth == nil {
		o.depth = noop.Int64ObservableUpDownCounter{}
	}
	if o.age == nil {
		o.age = noop.Float64ObservableGauge{}
	}
}

// addGauge adds an int64 gauge reported with the others, each value with
// the attributes observe gives plus endpoint. Call it before start (in
// Dispatcher.observe). It is the plug-in point for state kept elsewhere,
// for example:
//
//	o.addGauge(mp, "imcallback.queue.durable.depth", "{event}",
//		"After events in the durable queue.", ...)
func (o *observer) addGauge(mp metric.MeterProvider, name, unit, desc string, observe func(report func(v int64, attrs ...attribute.KeyValue))) error {
	inst, err := mp.Meter(meterName).Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	if inst == nil {
		inst = noop.Int64ObservableGauge{}
	}
	o.gauges = append(o.gauges, gauge{inst: inst, observe: observe})
	return err
}

// start registers the callback that reports counters and gauges at each
// collection, until close.
func (o *observer) start(mp metric.MeterProvider) error {
	insts := []metric.Observable{o.calls, o.activeG, o.depth, o.age}
	for _, g := range o.gauges {
		insts = append(insts, g.inst)
	}
	reg, err := mp.Meter(meterName).RegisterCallback(o.report, insts...)
	if reg != nil {
		o.regs = append(o.regs, reg)
	}
	return err
}

// close stops reporting to the MeterProvider, so a closed Dispatcher is
// not kept alive by it. Stats keeps working.
func (o *observer) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.regs {
		_ = r.Unregister()
	}
	o.regs = nil
}

// report is the meter callback.
func (o *observer) report(_ context.Context, ob metric.Observer) error {
	o.each(func(c *commandStats) {
		for out := range numOutcomes {
			if n := c.counts[out].Load(); n > 0 {
				ob.ObserveInt64(o.calls, int64(n), c.observe[out])
			}
		}
	})
	ob.ObserveInt64(o.activeG, o.active[0].Load(), o.activeOpt[0])
	ob.ObserveInt64(o.activeG, o.active[1].Load(), o.activeOpt[1])
	depth, age := o.queue()
	ob.ObserveInt64(o.depth, int64(depth), o.endOpt)
	ob.ObserveFloat64(o.age, age.Seconds(), o.endOpt)
	ep := attribute.String(attrEndpoint, o.endpoint)
	for _, g := range o.gauges {
		g.observe(func(v int64, attrs ...attribute.KeyValue) {
			// ep first: a gauge's own endpoint attribute, if it gives one,
			// wins (an attribute set keeps the last value of a key).
			ob.ObserveInt64(g.inst, v, metric.WithAttributes(append([]attribute.KeyValue{ep}, attrs...)...))
		})
	}
	return nil
}

// each calls f for every command label.
func (o *observer) each(f func(*commandStats)) {
	for _, c := range o.configured {
		f(c)
	}
	for _, c := range *o.seen.Load() {
		f(c)
	}
	f(o.other)
}

func (o *observer) newCommand(name string) *commandStats {
	c := &commandStats{name: name, o: o}
	ep := attribute.String(attrEndpoint, o.endpoint)
	cmd := attribute.String(attrCommand, name)
	for out := range numDurationOutcomes {
		set := attribute.NewSet(ep, cmd, attribute.String(attrKind, out.kind()), attribute.String(attrOutcome, outcomeNames[out]))
		c.record[out] = []metric.RecordOption{metric.WithAttributeSet(set)}
		if out < numOutcomes {
			c.observe[out] = metric.WithAttributeSet(set)
		}
	}
	return c
}

// command returns the stats of command: its own if it is configured or one
// of the first maxCommandLabels others seen, otherCommand's beyond them.
func (o *observer) command(name string) *commandStats {
	if c, ok := o.configured[name]; ok {
		return c
	}
	seen := *o.seen.Load()
	if c, ok := seen[name]; ok {
		return c
	}
	if len(seen) >= maxCommandLabels || len(name) > maxCommandLabelSize || checkCommand(name) != nil {
		return o.other
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	seen = *o.seen.Load()
	if c, ok := seen[name]; ok {
		return c
	}
	if len(seen) >= maxCommandLabels {
		return o.other
	}
	next := make(map[string]*commandStats, len(seen)+1)
	for k, v := range seen {
		next[k] = v
	}
	c := o.newCommand(name)
	next[name] = c
	o.seen.Store(&next)
	return c
}

// queue returns the queue's depth and the age of its oldest event.
func (o *observer) queue() (int, time.Duration) {
	n, at := o.queueState()
	if n == 0 || at.IsZero() {
		return n, 0
	}
	return n, max(0, time.Since(at))
}

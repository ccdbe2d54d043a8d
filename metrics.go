package callback

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sony/gobreaker/v2"
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
	if len(seen) >= maxCommandLabels || name == "" || len(name) > maxCommandLabelSize || !utf8.ValidString(name) {
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

// beginBefore notes a Before call in flight and returns its command's stats.
func (o *observer) beginBefore(command string) *commandStats {
	o.active[0].Add(1)
	return o.command(command)
}

// endBefore counts a Before call that began at start and returned r, and
// returns how long it took.
func (c *commandStats) endBefore(ctx context.Context, start time.Time, r Response) time.Duration {
	o := c.o
	o.active[0].Add(-1)
	out := beforeOutcome(r)
	c.counts[out].Add(1)
	took := time.Since(start)
	o.duration.Record(ctx, took.Seconds(), c.record[out]...)
	return took
}

func beforeOutcome(r Response) outcome {
	switch {
	case r.Err != nil && r.Action == Deny:
		return outFailedClosed
	case r.Err != nil:
		return outFailedOpen
	case r.Action == Deny:
		return outDenied
	case r.Action == Drop:
		return outDropped
	}
	return outAllowed
}

// queued counts an After event that entered the queue.
func (c *commandStats) queued() { c.counts[outQueued].Add(1) }

// rejected counts an After event refused because the queue was full.
func (c *commandStats) rejected() { c.counts[outRejectedFull].Add(1) }

// ended counts an After event whose delivery ended with err: delivered
// when nil, dead-lettered otherwise.
func (c *commandStats) ended(err error) {
	if err == nil {
		c.counts[outDelivered].Add(1)
	} else {
		c.counts[outDeadLettered].Add(1)
	}
}

// attemptStart notes the start of an After attempt, counting a retry for
// every attempt after the first. c may be nil.
func (c *commandStats) attemptStart(n int) time.Time {
	if c == nil {
		return time.Time{}
	}
	if n > 1 {
		c.counts[outRetried].Add(1)
	}
	c.o.active[1].Add(1)
	return time.Now()
}

// attemptEnd records the duration of an After attempt that began at start,
// and returns it (0 when c is nil).
func (c *commandStats) attemptEnd(ctx context.Context, start time.Time, res *http.Response, err error) time.Duration {
	if c == nil {
		return 0
	}
	c.o.active[1].Add(-1)
	out := outAttemptFailed
	if err == nil && res.StatusCode >= 200 && res.StatusCode < 300 {
		out = outDelivered
	}
	took := time.Since(start)
	c.o.duration.Record(ctx, took.Seconds(), c.record[out]...)
	return took
}

// Counts are the numbers of callbacks by outcome, since New.
type Counts struct {
	// Before calls that sent, or tried to send, a request (a disabled
	// command is not counted), by outcome.
	Allowed, Denied, Dropped uint64 // the App backend answered
	FailedOpen               uint64 // the callback failed and the event was allowed
	FailedClosed             uint64 // the callback failed and the event was denied (Rule.FailClosed)

	// After events.
	Queued       uint64 // accepted by After
	RejectedFull uint64 // refused by After with ErrQueueFull
	Delivered    uint64 // answered with a 2xx
	Retried      uint64 // retry attempts (not events): an event delivered at its third attempt counts 2
	DeadLettered uint64 // given up and handed to the dead-letter hook
}

// snapshot reads c's counters.
func (c *commandStats) snapshot() Counts {
	return Counts{
		Allowed:      c.counts[outAllowed].Load(),
		Denied:       c.counts[outDenied].Load(),
		Dropped:      c.counts[outDropped].Load(),
		FailedOpen:   c.counts[outFailedOpen].Load(),
		FailedClosed: c.counts[outFailedClosed].Load(),
		Queued:       c.counts[outQueued].Load(),
		RejectedFull: c.counts[outRejectedFull].Load(),
		Delivered:    c.counts[outDelivered].Load(),
		Retried:      c.counts[outRetried].Load(),
		DeadLettered: c.counts[outDeadLettered].Load(),
	}
}

// plus returns the sum of c and n.
func (c Counts) plus(n Counts) Counts {
	return Counts{
		Allowed:      c.Allowed + n.Allowed,
		Denied:       c.Denied + n.Denied,
		Dropped:      c.Dropped + n.Dropped,
		FailedOpen:   c.FailedOpen + n.FailedOpen,
		FailedClosed: c.FailedClosed + n.FailedClosed,
		Queued:       c.Queued + n.Queued,
		RejectedFull: c.RejectedFull + n.RejectedFull,
		Delivered:    c.Delivered + n.Delivered,
		Retried:      c.Retried + n.Retried,
		DeadLettered: c.DeadLettered + n.DeadLettered,
	}
}

// Stats is a snapshot of a Dispatcher's counters and gauges: the numbers
// its metrics report, read without any OpenTelemetry SDK.
type Stats struct {
	Total Counts // all commands
	// Commands holds the counts of each command label the metrics use: the
	// configured commands, the first 64 others seen, and "_other" for the
	// rest. Labels with nothing counted are left out.
	Commands map[string]Counts

	QueueDepth int // After events in the memory queue, waiting for a worker or a retry's time
	// OldestQueued is how long the oldest of them has waited since After
	// queued it, whichever endpoint it is for and whether it waits for a
	// worker, a retry or an open breaker; 0 when none.
	OldestQueued time.Duration
	ActiveBefore int // Before calls in flight
	ActiveAfter  int // After attempts in flight

	// Breakers holds the circuit breaker state of each endpoint called so
	// far, by URL (without query or credentials): "closed", "half-open" or
	// "open". Empty when Config.Breaker.Disabled.
	Breakers map[string]string
}

// Stats returns a snapshot of the Dispatcher's counters and gauges. It is
// cheap (atomic loads and small maps; with events in the memory queue it
// looks at the first event of each endpoint's and at each retry's, under
// the queue's locks, which After and the workers take only briefly) and
// safe to call at any time, also after Close. The counters are read one by one, so a
// snapshot taken under load may be off by the calls in flight.
func (d *Dispatcher) Stats() Stats {
	o := d.obs
	s := Stats{Commands: make(map[string]Counts)}
	o.each(func(c *commandStats) {
		if n := c.snapshot(); n != (Counts{}) {
			s.Commands[c.name] = n
			s.Total = s.Total.plus(n)
		}
	})
	s.QueueDepth, s.OldestQueued = o.queue()
	s.ActiveBefore = int(o.active[0].Load())
	s.ActiveAfter = int(o.active[1].Load())
	s.Breakers = make(map[string]string)
	d.endpoints.states(func(url string, state gobreaker.State) { s.Breakers[url] = state.String() })
	return s
}

// queueState returns the number of events in the memory queue and when the
// oldest of them was queued. A Config.Queue reports 0: its depth is the
// queue's own to report (natsqueue's Pending).
func (d *Dispatcher) queueState() (int, time.Time) {
	if d.mem == nil {
		return 0, time.Time{}
	}
	n := d.mem.len()
	if n == 0 {
		return 0, time.Time{}
	}
	return n, d.mem.oldest()
}

// observe sets up the Dispatcher's metrics and failure logs. New calls it.
// An error from the MeterProvider does not fail New, as metrics are not
// worth refusing to start for: it is logged at Warn level.
func (d *Dispatcher) observe() {
	mp := d.s.MeterProvider
	o, err := newObserver(mp, d.endpointName(), d.s.Commands, d.queueState)
	// Gauges of other parts are added here, before start.
	err = errors.Join(err, o.addGauge(mp, metricBreakerState, "{state}",
		"Circuit breaker state of each endpoint: 0 closed, 1 half-open, 2 open.",
		func(report func(int64, ...attribute.KeyValue)) {
			d.endpoints.states(func(url string, state gobreaker.State) {
				report(int64(state), attribute.String(attrEndpoint, url))
			})
		}))
	err = errors.Join(err, o.start(mp))
	if err != nil {
		d.log.LogAttrs(d.life, slog.LevelWarn, "callback: metrics are incomplete", slog.String("error", err.Error()))
	}
	d.obs = o
	d.beforeLog = newFloodLog(d.log, kindBefore, "callback: before failed", d.endpointName(), d.s.LogInterval)
	d.afterLog = newFloodLog(d.log, kindAfter, "callback: after event not delivered", d.endpointName(), d.s.LogInterval)
}

// closeObservers stops reporting metrics and writes the failure summaries
// still pending. Close calls it once every delivery has ended.
func (d *Dispatcher) closeObservers(ctx context.Context) {
	d.obs.close()
	d.beforeLog.flush(ctx)
	d.afterLog.flush(ctx)
}

// beforeDone counts a Before call that began at start and returned r,
// logs the endpoint's recovery if it was failing, and returns how long the
// call took.
func (d *Dispatcher) beforeDone(ctx context.Context, c *commandStats, start time.Time, r Response) time.Duration {
	took := c.endBefore(ctx, start, r)
	if r.Err == nil {
		d.beforeLog.ok(ctx)
	}
	return took
}

// deliveryDone counts an After event whose delivery ended with err, and
// logs the endpoint's recovery if it was failing.
func (d *Dispatcher) deliveryDone(c *commandStats, err error) {
	c.ended(err)
	if err == nil {
		d.afterLog.ok(d.life)
	}
}

package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// Defaults of HealthPolicy.
const (
	defaultDisableAfter = 72 * time.Hour
	defaultMinFailures  = 20
	// maxPendingHealth bounds the health events waiting for a slow
	// OnHealth hook; past it the newest are dropped and logged.
	maxPendingHealth = 1024
	// metricEndpointHealth is the gauge of each endpoint's health.
	metricEndpointHealth = "imcallback.endpoint.health"
)

// HealthPolicy says when an endpoint (callback URL) that keeps failing is
// disabled. An attempt fails when no answer comes (a transport error, a
// timeout) or the answer is not a 2xx; a call its caller gave up on, or
// that waited in the Dispatcher's own connection pool, counts neither way.
// An endpoint whose every attempt failed for DisableAfter, with at least
// MinFailures attempts in that time, is disabled. An App backend that
// answers 410 Gone to any callback has its endpoint disabled at once
// (Standard Webhooks: "stop sending"), unless DisableAfter is negative.
//
// A disabled endpoint gets no requests: Before fails open at once (or
// closed, under a FailClosed rule) with Response.Err wrapping
// ErrEndpointDisabled; After returns nil and the event goes straight to
// the dead-letter path with an error wrapping it (a durable Queue stores
// it as a dead letter, to be replayed once the endpoint is enabled). It
// stays disabled until Dispatcher.EnableEndpoint.
//
// While its circuit breaker is open an endpoint is tried once per
// Breaker.Cooldown, so with the defaults 72 h of failures are about 50,000
// attempts, well over MinFailures.
type HealthPolicy struct {
	// DisableAfter is how long every attempt must have failed. 0 means
	// 72 h; a negative value means never, not even for a 410 Gone (a
	// diagnostic tool that must see every answer, say).
	DisableAfter time.Duration
	// MinFailures is how many failed attempts that time must hold at
	// least. 0 means 20.
	MinFailures int
	// Probe, if positive, enables a disabled endpoint again by itself:
	// every Probe, each endpoint the policy disabled is sent
	// Dispatcher.Check's probe callback (CheckCommand) through the route
	// of an app that uses it, and one answered 2xx in the protocol is
	// enabled (HealthEnabled). The probes are made one at a time, from a
	// goroutine the Dispatcher owns, which Close ends. An endpoint no
	// current app uses, or only apps a Resolver disabled
	// (Endpoint.Disabled), is not probed. 0 means off: a disabled
	// endpoint stays so until Dispatcher.EnableEndpoint.
	Probe time.Duration
}

// validate applies the policy's defaults.
func (p *HealthPolicy) validate() error {
	if p.Probe < 0 {
		return fmt.Errorf("%w: Health.Probe is negative", ErrInvalidConfig)
	}
	if p.MinFailures < 0 {
		return fmt.Errorf("%w: Health.MinFailures is negative", ErrInvalidConfig)
	}
	if p.DisableAfter == 0 {
		p.DisableAfter = defaultDisableAfter
	}
	if p.MinFailures == 0 {
		p.MinFailures = defaultMinFailures
	}
	return nil
}

// HealthState is the state a HealthEvent reports.
type HealthState int

const (
	// HealthFailing: the first failed attempt after a success (or since
	// the endpoint was first called or enabled).
	HealthFailing HealthState = iota + 1
	// HealthRecovered: the first successful attempt after failures.
	HealthRecovered
	// HealthDisabled: the endpoint was disabled (see HealthPolicy).
	HealthDisabled
	// HealthEnabled: Dispatcher.EnableEndpoint enabled it again.
	HealthEnabled
)

// String returns the state's name: "failing", "recovered", "disabled" or
// "enabled".
func (s HealthState) String() string {
	switch s {
	case HealthFailing:
		return "failing"
	case HealthRecovered:
		return "recovered"
	case HealthDisabled:
		return "disabled"
	case HealthEnabled:
		return "enabled"
	}
	return "HealthState(" + fmt.Sprint(int(s)) + ")"
}

// HealthEvent is a change of an endpoint's health, given to
// Config.OnHealth.
type HealthEvent struct {
	// URL names the endpoint as Stats and the logs do: its URL without
	// query or user information (a query is shown as a short hash).
	// Dispatcher.EnableEndpoint takes it.
	URL   string
	State HealthState
	// Since is when the state began: for HealthFailing the first failed
	// attempt, for the others the change itself.
	Since time.Time
	// Err is the failure behind HealthFailing and HealthDisabled (for a
	// 410 Gone, one wrapping ErrEndpointDisabled and ErrStatus); nil for
	// the others.
	Err error
}

// HealthFunc receives the health events of the Dispatcher's endpoints
// (Config.OnHealth). It is called from one goroutine the Dispatcher owns,
// one event at a time, in the order the changes happened, never from
// Before, After or a worker: a slow hook delays only the events after it
// (up to 1024 of them wait; more are dropped and logged). A panic in it
// is recovered and logged at Error level with its stack.
type HealthFunc func(HealthEvent)

// errGone is the error of a 410 Gone answer that disabled its endpoint.
var errGone = fmt.Errorf("%w: %w", ErrEndpointDisabled, &statusError{ErrStatus, http.StatusGone})

// goneErr returns errGone for a 410 answer that disabled e (see
// observed), and err, the answer's status error, otherwise.
func (e *urlState) goneErr(res *http.Response, err error) error {
	if res.StatusCode == http.StatusGone && e.health.disabled.Load() {
		return errGone
	}
	return err
}

// errDisabled is the error of a call or event refused because its
// endpoint is disabled, built once: refusals may come by the thousand.
var errDisabled = fmt.Errorf("%w: no request sent", ErrEndpointDisabled)

// endpointHealth is the health of one endpoint, a part of its urlState.
type endpointHealth struct {
	disabled atomic.Bool // read by every call: the only cost on a healthy path
	failing  atomic.Bool // read by every answer: set while mu's state is failing

	mu       sync.Mutex // guards the fields below and the changes of the flags above
	since    time.Time  // the first failure of the current run
	failures int        // failed attempts since then
}

// refuse returns errDisabled if e, or the route of the call
// (routeDisabled: Endpoint.Disabled), is disabled. Before (before its
// breaker), After and the After workers (deliverOnce) ask it before
// anything else.
func (e *urlState) refuse(routeDisabled bool) error {
	if routeDisabled || e.health.disabled.Load() {
		return errDisabled
	}
	return nil
}

// observed updates e's health with the outcome of one attempt: res and the
// breaker's verdict out (see breakerOutcome). It costs two loads on a
// healthy endpoint's success.
func (e *urlState) observed(out error, res *http.Response) {
	h := &e.health
	ok := out == nil && res != nil && res.StatusCode >= 200 && res.StatusCode < 300
	if ok && !h.failing.Load() {
		return
	}
	if out != nil && errors.Is(out, errAbandoned) {
		return
	}
	hub := e.us.health
	now := hub.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.disabled.Load() {
		return // an attempt that was in flight when it was disabled
	}
	if ok {
		h.failing.Store(false)
		h.failures = 0
		hub.emit(HealthEvent{URL: e.logURL, State: HealthRecovered, Since: now})
		return
	}
	err := healthErr(out, res)
	p := hub.s.Health
	if res != nil && res.StatusCode == http.StatusGone && p.DisableAfter > 0 {
		e.disableLocked(now, errGone)
		return
	}
	if !h.failing.Load() {
		h.failing.Store(true)
		h.since, h.failures = now, 0
		hub.emit(HealthEvent{URL: e.logURL, State: HealthFailing, Since: now, Err: err})
	}
	h.failures++
	if p.DisableAfter > 0 && now.Sub(h.since) >= p.DisableAfter && h.failures >= p.MinFailures {
		e.disableLocked(now, err)
	}
}

// healthErr is the error a HealthEvent shows for a failed attempt: a
// status error for an answer, the cause without the URL (which may carry
// a token in its query) for a transport error.
func healthErr(out error, res *http.Response) error {
	if res != nil && (res.StatusCode < 200 || res.StatusCode >= 300) {
		if res.StatusCode >= 300 && res.StatusCode < 400 {
			return &statusError{ErrRedirect, res.StatusCode}
		}
		return &statusError{ErrStatus, res.StatusCode}
	}
	if ue, ok := errors.AsType[*url.Error](out); ok {
		return ue.Err
	}
	return out
}

// disableLocked disables e, with e.health.mu held.
func (e *urlState) disableLocked(now time.Time, err error) {
	h := &e.health
	h.disabled.Store(true)
	h.failing.Store(false)
	h.failures = 0
	e.us.log.LogAttrs(context.Background(), slog.LevelError, "callback: endpoint disabled",
		slog.String("url", e.logURL), slog.String("error", err.Error()))
	e.us.health.emit(HealthEvent{URL: e.logURL, State: HealthDisabled, Since: now, Err: err})
}

// enable enables e again, if it was disabled.
func (e *urlState) enable() {
	h := &e.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.disabled.Load() {
		return
	}
	h.disabled.Store(false)
	now := e.us.health.now()
	e.us.log.LogAttrs(context.Background(), slog.LevelInfo, "callback: endpoint enabled", slog.String("url", e.logURL))
	e.us.health.emit(HealthEvent{URL: e.logURL, State: HealthEnabled, Since: now})
}

// EnableEndpoint enables again an endpoint that was disabled (see
// HealthPolicy), named by its URL as configured or resolved, or as
// Stats.Disabled and HealthEvent.URL show it. Enabling one that is not
// disabled does nothing. Its error wraps ErrNotFound when the Dispatcher
// has no such endpoint. Events dead-lettered while it was disabled are
// not sent again by it: replay them from the Queue's dead-letter store.
func (d *Dispatcher) EnableEndpoint(rawURL string) error {
	e := d.urls.named(rawURL)
	if e == nil {
		return fmt.Errorf("%w: endpoint %q", ErrNotFound, redactedName(rawURL))
	}
	e.enable()
	return nil
}

// redactedName names rawURL in an error: as logged, without its query.
func redactedName(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		return logURLOf(u)
	}
	return rawURL
}

// named returns the endpoint whose URL or logged name is name, or nil.
func (us *urlStates) named(name string) *urlState {
	if u, err := url.Parse(name); err == nil && u.Host != "" {
		us.mu.RLock()
		e := us.m[keyOf(u)]
		us.mu.RUnlock()
		if e != nil {
			return e
		}
	}
	us.mu.RLock()
	defer us.mu.RUnlock()
	for _, e := range us.m {
		if e.logURL == name {
			return e
		}
	}
	return nil
}

// healthOf returns the endpoints that are disabled and those failing, by
// logged URL, sorted.
func (us *urlStates) healthOf() (disabled, failing []string) {
	us.mu.RLock()
	for _, e := range us.m {
		switch {
		case e.health.disabled.Load():
			disabled = append(disabled, e.logURL)
		case e.health.failing.Load():
			failing = append(failing, e.logURL)
		}
	}
	us.mu.RUnlock()
	slices.Sort(disabled)
	slices.Sort(failing)
	return disabled, failing
}

// healthLevel is an endpoint's health as the metric reports it: 0
// healthy, 1 failing, 2 disabled.
func (e *urlState) healthLevel() int64 {
	switch {
	case e.health.disabled.Load():
		return 2
	case e.health.failing.Load():
		return 1
	}
	return 0
}

// deadLetterDisabled settles an event handed out for a disabled
// endpoint: no attempt, straight to the dead-letter path with an error
// wrapping ErrEndpointDisabled. p is the memory queue's permit, if any.
func (d *Dispatcher) deadLetterDisabled(dl Delivery, ev Event, r *route, p permit, stats *commandStats) {
	if p.valid() {
		p.abandon()
	}
	d.afterAttempt(&ev, r, time.Time{}, 0, nil, false, errDisabled)
	if d.mem != nil {
		_ = dl.DeadLetter(d.life, errDisabled) // the memory queue's never fails
	} else if !d.settle(ev, "dead letter", func(ctx context.Context) error { return dl.DeadLetter(ctx, errDisabled) }) {
		// Not stored: keep it rather than lose it, as deliverOnce does.
		wait := defaultRetrySchedule[0]
		if n := len(d.s.RetrySchedule); n > 0 {
			wait = d.s.RetrySchedule[n-1]
		}
		d.settle(ev, "retry", func(ctx context.Context) error { return dl.Retry(ctx, wait) })
		return
	}
	d.deliveryDone(stats, errDisabled)
	d.deadLetter(ev, errDisabled)
}

// healthHub hands the health events to Config.OnHealth from its own
// goroutine, started by New when the hook is set and ended by Close.
type healthHub struct {
	s   *settings
	log *slog.Logger
	now func() time.Time // the clock of health changes; a test seam

	mu      sync.Mutex // guards pending, dropped and closed
	pending []HealthEvent
	dropped int
	closed  bool

	wake chan struct{} // a signal that pending has events; buffered 1
	quit chan struct{} // closed by close: deliver what is pending, then end
	done chan struct{} // closed when the goroutine ends; nil without a hook
}

func newHealthHub(s *settings) *healthHub {
	h := &healthHub{s: s, log: s.Logger, now: time.Now, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	if s.OnHealth != nil {
		h.done = make(chan struct{})
		go h.run()
	}
	return h
}

// emit queues ev for the hook. It never waits.
func (h *healthHub) emit(ev HealthEvent) {
	if h.done == nil {
		return
	}
	h.mu.Lock()
	switch {
	case h.closed:
	case len(h.pending) >= maxPendingHealth:
		h.dropped++
	default:
		h.pending = append(h.pending, ev)
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run calls the hook with each event in turn until close.
func (h *healthHub) run() {
	defer close(h.done)
	for {
		h.mu.Lock()
		evs, dropped := h.pending, h.dropped
		h.pending, h.dropped = nil, 0
		h.mu.Unlock()
		if dropped > 0 {
			h.log.LogAttrs(context.Background(), slog.LevelError, "callback: health events dropped: OnHealth is too slow",
				slog.Int("dropped", dropped))
		}
		for _, ev := range evs {
			h.call(ev)
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-h.wake:
		case <-h.quit:
			h.mu.Lock()
			n := len(h.pending)
			h.mu.Unlock()
			if n == 0 {
				return
			}
		}
	}
}

// call runs the hook once, recovering a panic.
func (h *healthHub) call(ev HealthEvent) {
	defer func() {
		if p := recover(); p != nil {
			h.log.LogAttrs(context.Background(), slog.LevelError, "callback: OnHealth hook panicked",
				slog.String("url", ev.URL),
				slog.String("panic", fmt.Sprint(p)),
				slog.String("stack", string(debug.Stack())),
			)
		}
	}()
	h.s.OnHealth(ev)
}

// close stops taking events and waits until the hook has had those
// pending, or until ctx ends or, for a ctx without a deadline, drain has
// passed since begin (a negative drain: no limit): Close's own deadline.
// A hook that does not return by then is left running: its goroutine
// ends when the hook returns. The error says so.
func (h *healthHub) close(ctx context.Context, begin time.Time, drain time.Duration) error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.quit)
	}
	h.mu.Unlock()
	if h.done == nil {
		return nil
	}
	var limit <-chan time.Time
	if _, ok := ctx.Deadline(); !ok && drain > 0 {
		t := time.NewTimer(max(0, drain-time.Since(begin)))
		defer t.Stop()
		limit = t.C
	}
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("callback: Close: OnHealth hook still running: %w", ctx.Err())
	case <-limit:
		return fmt.Errorf("callback: Close: OnHealth hook still running after %v: %w", drain, context.DeadlineExceeded)
	}
}

// afterDisabled sends a memory event for a disabled endpoint, which After
// accepted, straight to the dead-letter path: it is never queued.
func (d *Dispatcher) afterDisabled(ev Event, r *route, stats *commandStats) {
	if ev.ID == "" {
		ev.ID = d.eventID(ev.seq)
	}
	stats.queued()
	d.attempts.queued(&ev, eventRef{}, nil)
	d.afterAttempt(&ev, r, time.Time{}, 0, nil, false, errDisabled)
	d.deliveryDone(stats, errDisabled)
	d.deadLetter(ev, errDisabled)
}

// healthLevels reports the health of each endpoint (see healthLevel) for
// the imcallback.endpoint.health gauge.
func (us *urlStates) healthLevels(report func(int64, ...attribute.KeyValue)) {
	us.mu.RLock()
	defer us.mu.RUnlock()
	for _, e := range us.m {
		report(e.healthLevel(), attribute.String(attrEndpoint, e.logURL))
	}
}

// probeDisabled runs until Close starts: every Health.Probe it probes the
// disabled endpoints and enables those that answer (see HealthPolicy.Probe).
func (d *Dispatcher) probeDisabled() {
	defer close(d.probed)
	t := time.NewTicker(d.s.Health.Probe)
	defer t.Stop()
	for {
		select {
		case <-d.stopping.Done():
			return
		case <-t.C:
		}
		for _, c := range d.probeTargets() {
			if d.stopping.Err() != nil {
				return
			}
			if err := d.check(d.stopping, c.app, c.r); err == nil {
				c.e.enable()
			}
		}
	}
}

// probeTarget is a disabled endpoint and the route of an app to probe it
// through.
type probeTarget struct {
	e   *urlState
	app int
	r   *route
}

// probeTargets returns the disabled endpoints, each with the route of the
// app with the lowest ID that uses it and is not disabled by its Endpoint.
func (d *Dispatcher) probeTargets() []probeTarget {
	disabled := map[urlKey]*urlState{}
	d.urls.mu.RLock()
	for k, e := range d.urls.m {
		if e.health.disabled.Load() {
			disabled[k] = e
		}
	}
	d.urls.mu.RUnlock()
	if len(disabled) == 0 {
		return nil
	}
	var out []probeTarget
	if d.routes == nil {
		if e := disabled[keyOf(d.static.url)]; e != nil {
			out = append(out, probeTarget{e, 0, d.static})
		}
		return out
	}
	best := map[urlKey]probeTarget{}
	rs := d.routes
	rs.mu.RLock()
	for app, p := range rs.m {
		if p.route == nil || p.route.disabled {
			continue
		}
		k := keyOf(p.route.url)
		e := disabled[k]
		if e == nil {
			continue
		}
		if b, ok := best[k]; !ok || app < b.app {
			best[k] = probeTarget{e, app, p.route}
		}
	}
	rs.mu.RUnlock()
	for _, t := range best {
		out = append(out, t)
	}
	return out
}

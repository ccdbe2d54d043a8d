package callback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// urlKey names an endpoint: the callback URL as resolved, query
// included (two apps whose URLs differ only in the query are two
// endpoints), without user information. A struct, not a string, so a
// lookup allocates nothing.
type urlKey struct{ scheme, host, path, query string }

func keyOf(u *url.URL) urlKey {
	return urlKey{u.Scheme, u.Host, u.Path, u.RawQuery}
}

// Fair share and registry upkeep.
const (
	// activeWindow is how recently an endpoint must have had work to count
	// as active in the fair share of the workers.
	activeWindow = time.Second
	// activeRefresh is how often the count of active endpoints is redone.
	activeRefresh = 100 * time.Millisecond
	// defaultURLIdle is how long an endpoint that no current route
	// uses stays in the registry after its last call.
	defaultURLIdle = 10 * time.Minute
)

// urlStates holds the urlState of each endpoint (callback URL) the
// Dispatcher calls, created on first use and dropped once idle (see sweep).
type urlStates struct {
	s      *settings
	log    *slog.Logger
	health *healthHub // hands health changes to Config.OnHealth: see health.go

	mu sync.RWMutex // guards m
	m  map[urlKey]*urlState

	// inUse reports the keys that a current route uses; nil means none
	// beyond those being called. Set by New before any call.
	inUse func() map[urlKey]bool
	idle  time.Duration // how long an unused endpoint is kept; a test seam
	swept atomic.Int64  // UnixNano of the last sweep

	active    atomic.Int32  // endpoints with work lately: see fairCap
	counted   atomic.Int64  // UnixNano when active was counted
	countLock sync.Mutex    // one counter at a time
	wantFor   time.Duration // how long a wanted endpoint counts as active: see newURLStates
}

func newURLStates(s *settings) *urlStates {
	// An endpoint whose events wait while the others' attempts hold every
	// worker must still count as active when those attempts end, which may
	// be a Timeout later: with a durable Queue its events are not held in
	// this node's memory, only noted as wanted when After took them. So
	// the demand counts for the longest timeout the settings give, if that
	// is longer than activeWindow (with an activeWindow of 1 s, a slow App
	// answering in 1.5 s kept its workers beside a waiting app).
	want := max(activeWindow, s.Timeout)
	for _, r := range s.Commands {
		want = max(want, r.Timeout)
	}
	return &urlStates{s: s, log: s.Logger, health: newHealthHub(s), m: make(map[urlKey]*urlState), idle: defaultURLIdle, wantFor: want}
}

// of returns the endpoint that u calls.
func (us *urlStates) of(u *url.URL) *urlState {
	k := keyOf(u)
	us.mu.RLock()
	e := us.m[k]
	us.mu.RUnlock()
	if e != nil {
		return e
	}
	us.sweep(time.Now())
	us.mu.Lock()
	defer us.mu.Unlock()
	if e = us.m[k]; e == nil {
		e = newURLState(us, logURLOf(u))
		us.m[k] = e
	}
	return e
}

// forRoute returns the endpoint of r, cached in r until it is dropped.
func (us *urlStates) forRoute(r *route) *urlState {
	if e := r.state.Load(); e != nil && !e.dropped.Load() {
		return e
	}
	e := us.of(r.url)
	r.state.Store(e)
	return e
}

// logURLOf names an endpoint in logs, metrics and Stats: its URL without
// query and user information, and, when it has a query, a short hash of
// the query so that endpoints that differ only there stay apart without
// showing it (a query may carry a token).
func logURLOf(u *url.URL) string {
	s := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if u.RawQuery != "" {
		h := sha256.Sum256([]byte(u.RawQuery))
		s += "?#" + hex.EncodeToString(h[:4])
	}
	return s
}

// sweep drops the endpoints that no current route uses, with nothing in
// flight or queued, idle for us.idle. It runs when an endpoint is
// created, at most once per tenth of us.idle, so the registry does not
// grow with every change of an app's URL.
func (us *urlStates) sweep(now time.Time) {
	last := us.swept.Load()
	if now.UnixNano()-last < int64(us.idle/10) || !us.swept.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	var used map[urlKey]bool
	if us.inUse != nil {
		used = us.inUse()
	}
	cut := now.Add(-us.idle).UnixNano()
	us.mu.Lock()
	defer us.mu.Unlock()
	for k, e := range us.m {
		if used[k] || e.health.disabled.Load() || e.inflight.Load() > 0 || e.held.Load() > 0 || e.used.Load() > cut {
			continue
		}
		e.dropped.Store(true)
		delete(us.m, k)
	}
}

// fairCap returns how many After attempts one endpoint may have in flight
// now: AfterLimit.Concurrency, and, while several endpoints have had work
// lately (one in flight or held, or wanted within wantFor), no more than
// an equal share of the workers,
// so a slow App backend cannot take them all. The count of active
// endpoints is redone at most every activeRefresh.
func (us *urlStates) fairCap(now time.Time) int32 {
	c := int32(us.s.AfterLimit.Concurrency)
	if now.UnixNano()-us.counted.Load() > int64(activeRefresh) && us.countLock.TryLock() {
		us.counted.Store(now.UnixNano())
		recent := now.Add(-us.wantFor).UnixNano()
		n := int32(0)
		us.mu.RLock()
		for _, e := range us.m {
			if e.inflight.Load() > 0 || e.held.Load() > 0 || e.demand.Load() > recent {
				n++
			}
		}
		us.mu.RUnlock()
		us.active.Store(n)
		us.countLock.Unlock()
	}
	if n := us.active.Load(); n > 1 {
		w := int32(us.s.Workers)
		c = min(c, (w+n-1)/n)
	}
	return max(c, 1)
}

// states calls f with the breaker state of each endpoint, in no order; none
// when the breaker is disabled.
func (us *urlStates) states(f func(url string, state gobreaker.State)) {
	us.mu.RLock()
	defer us.mu.RUnlock()
	for _, e := range us.m {
		if e.breaker != nil {
			f(e.logURL, e.breaker.State())
		}
	}
}

// A urlState is the resilience state of one endpoint (callback URL): its
// circuit breaker and the limits of its After deliveries.
type urlState struct {
	us      *urlStates
	logURL  string
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}] // nil: disabled
	limiter *rate.Limiter                              // nil: no rate limit

	cooldown time.Duration
	halfOpen atomic.Int64 // UnixNano when the open breaker lets a probe through
	open     atomic.Bool  // the breaker is open: set as it changes state

	inflight atomic.Int32 // After attempts in flight
	held     atomic.Int32 // events the memory queue holds for it
	demand   atomic.Int64 // UnixNano of the last After event for it
	used     atomic.Int64 // UnixNano of its last call
	latency  atomic.Int64 // moving average of its After attempts, in ns
	next     atomic.Int64 // UnixNano of the last postponed event's turn: see later
	dropped  atomic.Bool  // removed from the registry: look it up again
	refusing atomic.Bool  // After refused it an event with ErrQueueFull since it last accepted one

	health endpointHealth // failing, disabled: see health.go
}

func newURLState(us *urlStates, logURL string) *urlState {
	s := us.s
	e := &urlState{
		us:       us,
		logURL:   logURL,
		cooldown: s.Breaker.Cooldown,
	}
	e.used.Store(time.Now().UnixNano())
	if s.AfterLimit.Rate > 0 {
		e.limiter = rate.NewLimiter(rate.Limit(s.AfterLimit.Rate), s.AfterLimit.Burst)
	}
	if s.Breaker.Disabled {
		return e
	}
	e.breaker = newBreaker(s.Breaker, logURL, func(from, to gobreaker.State) {
		e.stateChanged(us.log, from, to)
	})
	return e
}

// wanted notes that an After event for e came at now. An endpoint that
// was quiet for wantFor becomes active at once: the count of active
// endpoints is redone at the next fairCap, so its share is kept from the
// start.
//
// A note newer than demandGrain is left as it is: the demand is read
// against wantFor (a second or more), and the read spares every After a
// write to a line the workers read.
func (e *urlState) wanted(now time.Time) {
	t := now.UnixNano()
	if t-e.demand.Load() < int64(demandGrain) {
		return
	}
	if prev := e.demand.Swap(t); t-prev > int64(e.us.wantFor) {
		e.us.counted.Store(0)
	}
}

// refusedFirst reports whether an After refused with ErrQueueFull is
// the first of its burst for e: the first since After last accepted an
// event for it. Only that one is recorded in the attempt log; the burst's
// others are counted (Stats, metrics) and cost no lock. A full queue
// accepts an event each time a slot frees, so the log holds at most one
// refusal per event accepted, and one for a burst that never ends.
func (e *urlState) refusedFirst() bool {
	return !e.refusing.Load() && e.refusing.CompareAndSwap(false, true)
}

// accepted notes that After accepted an event for e, which ends a burst
// of refusals (refusedFirst). It reads before it writes: a flag left
// alone is a line the other callers keep in their caches.
func (e *urlState) accepted() {
	if e.refusing.Load() {
		e.refusing.Store(false)
	}
}

// demandGrain is how stale urlState.demand may be: see wanted.
const demandGrain = time.Millisecond

// halfOpenPoll is how soon an After event refused by a half-open breaker,
// whose probe is in flight, is offered to the endpoint again.
const halfOpenPoll = 100 * time.Millisecond

// A permit lets one After attempt go to its endpoint: it holds a slot of
// the endpoint's concurrency and the breaker's admission. Exactly one of
// end and abandon must be called.
type permit struct {
	e     *urlState
	done  func(error) // reports the outcome to the breaker
	start time.Time
}

// take reserves one After attempt if the endpoint can take it now: a slot
// is free (see fairCap), the breaker lets it through and the rate allows
// it. It never waits. When it cannot, it returns when to offer the
// endpoint an event again: the zero time means when one of its attempts
// in flight ends. An event refused here makes no attempt, so an open
// breaker burns none.
func (e *urlState) take(now time.Time) (p permit, wake time.Time, ok bool) {
	e.used.Store(now.UnixNano())
	e.wanted(now)
	if e.inflight.Add(1) > e.us.fairCap(now) {
		e.inflight.Add(-1)
		return p, time.Time{}, false
	}
	// gobreaker takes its lock for State as for Allow: the open flag tells
	// without one that the breaker is open and its cooldown not over.
	if e.open.Load() {
		if at := time.Unix(0, e.halfOpen.Load()); at.After(now) {
			e.inflight.Add(-1)
			return p, at, false
		}
	}
	if e.limiter != nil && !e.limiter.AllowN(now, 1) {
		e.inflight.Add(-1)
		r := e.limiter.ReserveN(now, 1)
		wait := r.DelayFrom(now)
		r.CancelAt(now)
		return p, now.Add(max(wait, time.Millisecond)), false
	}
	done := reportNothing
	if e.breaker != nil {
		var err error
		if done, err = e.breaker.Allow(); err != nil {
			e.inflight.Add(-1)
			if errors.Is(err, gobreaker.ErrOpenState) {
				return p, time.Unix(0, max(e.halfOpen.Load(), now.Add(time.Millisecond).UnixNano())), false
			}
			return p, now.Add(halfOpenPoll), false
		}
	}
	return permit{e: e, done: done, start: now}, time.Time{}, true
}

// end reports the outcome of the attempt made under p, whose caller's
// context is ctx, and frees its slot.
func (p permit) end(ctx context.Context, res *http.Response, err error) {
	took := int64(time.Since(p.start))
	for {
		old := p.e.latency.Load()
		avg := took
		if old > 0 {
			avg = old + (took-old)/8
		}
		if p.e.latency.CompareAndSwap(old, avg) {
			break
		}
	}
	p.e.inflight.Add(-1)
	out := breakerOutcome(ctx, res, err)
	p.e.observed(out, res)
	p.done(out)
}

// abandon frees p's slot without an attempt made.
func (p permit) abandon() {
	p.e.inflight.Add(-1)
	p.done(errAbandoned)
}

// valid reports whether p was given by take.
func (p permit) valid() bool { return p.e != nil }

// maxPostpone bounds how far ahead later puts an event's turn.
const maxPostpone = 30 * time.Second

// later returns how long to postpone an event of a Config.Queue that the
// endpoint refused at now, to be offered again at wake (zero: when a slot
// frees). The postponed events of an endpoint are given turns spaced by
// the time the endpoint takes per event (its rate limit, or its attempts'
// average time over its share of the workers), from wake on, so that
// they come back about as fast as the endpoint can take them rather than
// all at once; at most maxPostpone ahead.
func (e *urlState) later(now, wake time.Time) time.Duration {
	spacing := time.Millisecond
	if e.limiter != nil {
		spacing = max(spacing, time.Duration(float64(time.Second)/float64(e.limiter.Limit())))
	}
	spacing = max(spacing, time.Duration(e.latency.Load())/time.Duration(e.us.fairCap(now)))
	limit := now.Add(maxPostpone).UnixNano()
	for {
		old := e.next.Load()
		at := max(old, now.UnixNano(), wake.UnixNano()) + int64(spacing)
		at = min(at, limit)
		if e.next.CompareAndSwap(old, at) {
			return time.Duration(at - now.UnixNano())
		}
	}
}

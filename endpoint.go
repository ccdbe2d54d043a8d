package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// ErrBreakerOpen is set in Before's Response.Err when the endpoint's circuit
// breaker is open (or half-open with its probe call in flight): nothing was
// sent, and the command's failure policy applies at once. Such refusals go
// through the flood-controlled failure log like other failures (a summary
// per Config.LogInterval); the breaker logs its own opening at Error level.
var ErrBreakerOpen = errors.New("callback: circuit breaker open")

// Defaults of Breaker and AfterLimit.
const (
	defaultBreakerConsecutive = 5
	defaultBreakerRatio       = 0.5
	defaultBreakerMinCalls    = 20
	defaultBreakerWindow      = 10 * time.Second
	defaultBreakerCooldown    = 5 * time.Second
	defaultAfterRate          = 1000 // per second, Tencent's default for push callbacks
)

// Breaker configures the circuit breaker that each endpoint (callback URL)
// has, shared by its Before calls and its After attempts. Zero values mean
// the documented defaults.
//
// A call counts as an endpoint failure when it gets no answer in time
// (transport error or timeout) or an answer of 408, 429 or 5xx: the
// failures After retries. Other answers show the endpoint is up and count
// as successes. A call the caller abandoned (its ctx ended first), a
// disabled command, an invalid event and a closed Dispatcher never reach
// the breaker.
type Breaker struct {
	// Disabled turns the breaker off: every call goes to the network.
	Disabled bool

	// ConsecutiveFailures opens the breaker after this many failures in a
	// row. 0 means 5.
	ConsecutiveFailures int

	// FailureRatio opens the breaker when at least this share of the calls
	// that ended in the last Window failed, once MinCalls calls have ended
	// there. 0 means 0.5; it must be at most 1.
	FailureRatio float64

	// MinCalls is how many calls must end in Window before FailureRatio
	// applies. 0 means 20.
	MinCalls int

	// Window is the rolling window of FailureRatio. 0 means 10 s.
	Window time.Duration

	// Cooldown is how long the breaker stays open before it lets one probe
	// call through (half-open). The probe's success closes it; its failure
	// opens it for another Cooldown. 0 means 5 s.
	Cooldown time.Duration
}

// AfterLimit bounds the After deliveries to each endpoint. The limits count
// requests, so retries count too. A delivery waits for its turn; the queue
// absorbs the excess. Zero values mean the documented defaults.
type AfterLimit struct {
	// Rate is how many After requests per second may start. 0 means 1,000
	// (Tencent Cloud IM's default for its push callbacks); a negative value
	// means no limit.
	Rate float64

	// Burst is how many requests may start at once above Rate after a quiet
	// spell. 0 means a tenth of a second's worth of Rate, at least 1 (100 at
	// the default Rate).
	Burst int

	// Concurrency is how many After requests may be in flight at once. 0
	// means Config.Workers, so with one endpoint only the worker pool bounds
	// it; lower it to spare a slow App backend.
	Concurrency int
}

// validate checks b and applies its defaults.
func (b *Breaker) validate() error {
	switch {
	case b.ConsecutiveFailures < 0, b.MinCalls < 0:
		return fmt.Errorf("%w: Breaker counts are negative", ErrInvalidConfig)
	case b.FailureRatio < 0 || b.FailureRatio > 1:
		return fmt.Errorf("%w: Breaker.FailureRatio %v is not in [0, 1]", ErrInvalidConfig, b.FailureRatio)
	case b.Window < 0, b.Cooldown < 0:
		return fmt.Errorf("%w: Breaker durations are negative", ErrInvalidConfig)
	}
	b.ConsecutiveFailures = orDefault(b.ConsecutiveFailures, defaultBreakerConsecutive)
	b.FailureRatio = orDefault(b.FailureRatio, defaultBreakerRatio)
	b.MinCalls = orDefault(b.MinCalls, defaultBreakerMinCalls)
	b.Window = orDefault(b.Window, defaultBreakerWindow)
	b.Cooldown = orDefault(b.Cooldown, defaultBreakerCooldown)
	return nil
}

// validate checks l and applies its defaults; workers is Config.Workers.
func (l *AfterLimit) validate(workers int) error {
	if l.Burst < 0 || l.Concurrency < 0 {
		return fmt.Errorf("%w: AfterLimit.Burst or Concurrency is negative", ErrInvalidConfig)
	}
	l.Rate = orDefault(l.Rate, defaultAfterRate)
	if l.Burst == 0 {
		l.Burst = max(1, int(l.Rate/10))
	}
	l.Concurrency = orDefault(l.Concurrency, workers)
	return nil
}

// validateEndpoints checks and completes the Breaker and AfterLimit of s.
func (s *settings) validateEndpoints() error {
	if err := s.Breaker.validate(); err != nil {
		return err
	}
	return s.AfterLimit.validate(s.Workers)
}

// endpointKey names an endpoint: the callback URL without its query and
// user information. A struct, not a string, so a lookup allocates nothing.
type endpointKey struct{ scheme, host, path string }

// endpoints holds the state of each endpoint the Dispatcher calls, created
// on first use.
type endpoints struct {
	s   *settings
	log *slog.Logger

	mu sync.RWMutex // guards m
	m  map[endpointKey]*endpoint
}

func newEndpoints(s *settings) *endpoints {
	return &endpoints{s: s, log: s.Logger, m: make(map[endpointKey]*endpoint)}
}

// of returns the endpoint that u calls.
func (es *endpoints) of(u *url.URL) *endpoint {
	k := endpointKey{u.Scheme, u.Host, u.Path}
	es.mu.RLock()
	e := es.m[k]
	es.mu.RUnlock()
	if e != nil {
		return e
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	if e = es.m[k]; e == nil {
		e = newEndpoint(es.s, es.log, (&url.URL{Scheme: k.scheme, Host: k.host, Path: k.path}).String())
		es.m[k] = e
	}
	return e
}

// states calls f with the breaker state of each endpoint, in no order; none
// when the breaker is disabled.
func (es *endpoints) states(f func(url string, state gobreaker.State)) {
	es.mu.RLock()
	defer es.mu.RUnlock()
	for _, e := range es.m {
		if e.breaker != nil {
			f(e.logURL, e.breaker.State())
		}
	}
}

// An endpoint is the resilience state of one callback URL: its circuit
// breaker and the limits of its After deliveries.
type endpoint struct {
	logURL  string
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}] // nil: disabled
	limiter *rate.Limiter                              // nil: no rate limit
	slots   chan struct{}                              // one per After request in flight; nil: no cap beyond Workers

	cooldown time.Duration
	halfOpen atomic.Int64 // UnixNano when the open breaker lets a probe through

	mu      sync.Mutex    // guards changed
	changed chan struct{} // closed and replaced at every state change
}

func newEndpoint(s *settings, log *slog.Logger, logURL string) *endpoint {
	e := &endpoint{
		logURL:   logURL,
		cooldown: s.Breaker.Cooldown,
		changed:  make(chan struct{}),
	}
	if s.AfterLimit.Concurrency < s.Workers {
		e.slots = make(chan struct{}, s.AfterLimit.Concurrency)
	}
	if s.AfterLimit.Rate > 0 {
		e.limiter = rate.NewLimiter(rate.Limit(s.AfterLimit.Rate), s.AfterLimit.Burst)
	}
	if s.Breaker.Disabled {
		return e
	}
	b := s.Breaker
	e.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         logURL,
		MaxRequests:  1,
		Interval:     b.Window,
		BucketPeriod: b.Window / 10,
		Timeout:      b.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			ended := c.TotalSuccesses + c.TotalFailures
			return c.ConsecutiveFailures >= uint32(b.ConsecutiveFailures) ||
				ended >= uint32(b.MinCalls) && float64(c.TotalFailures) >= b.FailureRatio*float64(ended)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errAbandoned) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			e.stateChanged(log, from, to)
		},
	})
	return e
}

// stateChanged logs a transition and wakes the After attempts waiting for
// it. It runs with the breaker's lock held, so it never calls the breaker.
func (e *endpoint) stateChanged(log *slog.Logger, from, to gobreaker.State) {
	msg, attrs := "callback: circuit breaker "+to.String(), []any{
		slog.String("url", e.logURL),
		slog.String("from", from.String()),
	}
	if to == gobreaker.StateOpen {
		e.halfOpen.Store(time.Now().Add(e.cooldown).UnixNano())
		log.Error(msg, attrs...)
	} else {
		log.Info(msg, attrs...)
	}
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// errAbandoned marks a call its caller gave up on: not the endpoint's fault.
var errAbandoned = errors.New("callback: call abandoned by its caller")

// errFailedStatus marks an answer that counts as an endpoint failure.
var errFailedStatus = errors.New("callback: failed status")

// breakerOutcome tells the breaker how a call that ended with res and err went:
// nil (the endpoint answered), errAbandoned (caller ended before the
// endpoint could answer) or an endpoint failure.
func breakerOutcome(caller context.Context, res *http.Response, err error) error {
	switch {
	case err != nil && caller.Err() != nil:
		return errAbandoned
	case err != nil:
		return err
	case res.StatusCode == http.StatusRequestTimeout, res.StatusCode == http.StatusTooManyRequests,
		res.StatusCode >= 500:
		return errFailedStatus
	}
	return nil
}

// reportNothing is the outcome reporter of a call with the breaker disabled.
func reportNothing(error) {}

// allow admits a Before call if the breaker lets it through, and returns
// the function that reports the call's outcome, which must be called once.
// It never waits: an open breaker is an error wrapping ErrBreakerOpen.
func (e *endpoint) allow() (done func(error), err error) {
	if e.breaker == nil {
		return reportNothing, nil
	}
	done, err = e.breaker.Allow()
	switch {
	case err == nil:
		return done, nil
	case errors.Is(err, gobreaker.ErrOpenState):
		return nil, errOpen
	default:
		return nil, errProbing
	}
}

// The errors of a refused Before call, built once: refusals come by the
// thousand while the breaker is open.
var (
	errOpen    = fmt.Errorf("%w: %w", ErrBreakerOpen, gobreaker.ErrOpenState)
	errProbing = fmt.Errorf("%w: half-open, probe in flight: %w", ErrBreakerOpen, gobreaker.ErrTooManyRequests)
)

// halfOpenPoll bounds how long an After attempt waits for a half-open
// breaker's probe before it asks again, in case the probe was abandoned.
const halfOpenPoll = 100 * time.Millisecond

// acquire waits until one After attempt may go to the endpoint: the breaker
// lets it through, one of the Concurrency slots is free and the rate allows
// it. It returns the function that reports the attempt's outcome and frees
// its slot, which must be called once; or ctx's error, when ctx ends first.
// An attempt waiting here is not made, so an open breaker burns no attempts.
func (e *endpoint) acquire(ctx context.Context) (end func(res *http.Response, err error), err error) {
	done, err := e.admit(ctx)
	if err != nil {
		return nil, err
	}
	if e.slots != nil {
		select {
		case e.slots <- struct{}{}:
		case <-ctx.Done():
			done(errAbandoned)
			return nil, ctx.Err()
		}
	}
	if e.limiter != nil {
		if err := e.limiter.Wait(ctx); err != nil {
			e.release()
			done(errAbandoned)
			return nil, err
		}
	}
	return func(res *http.Response, err error) {
		e.release()
		done(breakerOutcome(ctx, res, err))
	}, nil
}

// release frees the concurrency slot that acquire took.
func (e *endpoint) release() {
	if e.slots != nil {
		<-e.slots
	}
}

// admit waits until the breaker lets an After attempt through.
func (e *endpoint) admit(ctx context.Context) (done func(error), err error) {
	if e.breaker == nil {
		return reportNothing, nil
	}
	for {
		e.mu.Lock()
		changed := e.changed
		e.mu.Unlock()
		done, err := e.breaker.Allow()
		if err == nil {
			return done, nil
		}
		wait := halfOpenPoll // half-open: a probe is in flight
		if errors.Is(err, gobreaker.ErrOpenState) {
			wait = max(time.Until(time.Unix(0, e.halfOpen.Load())), time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

package callback

import (
	"cmp"
	"fmt"
	"time"
)

// The policies Config holds beside its scalar settings: for each
// endpoint (Breaker, AfterLimit), for each command (Rule) and for a
// durable Queue's retries (RetrySchedule), with the checks and defaults
// that Config.validate applies to them.

// Rule holds the settings of one command.
type Rule struct {
	// Disabled sends no request: Before allows, After accepts and drops.
	Disabled bool
	// Timeout bounds one request for this command; 0 means Config.Timeout.
	Timeout time.Duration
	// FailClosed makes Before deny (503 "callback failed") instead of allow
	// when the callback fails.
	FailClosed bool
	// Shadow sends Before callbacks as usual but never enforces the App
	// backend's answer: Before returns Allow, with the protocol's allow
	// code and message and no changes to apply, and the App's own answer
	// in Response.Shadow, counted in the metrics (outcomes
	// shadow_allowed, shadow_denied, shadow_dropped), the attempt log and
	// the span. A failure is logged and counted as failed open, never
	// closed: Shadow overrides FailClosed. It lets an App try a new rule
	// on live traffic: shadow it, watch the denied share, then enforce.
	// After events are delivered as usual.
	Shadow bool
}

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
// requests, so retries count too. An event whose endpoint is at a limit (or
// whose breaker is open) waits in the queue, parked with its endpoint,
// while the workers deliver other endpoints' events; no worker waits for
// it. Zero values mean the documented defaults.
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
	// it; lower it to spare a slow App backend. Whatever it is, while n
	// endpoints have had After work lately (in the last second, or the
	// longest Timeout if that is longer), each gets at most
	// Workers/n (rounded up) of the workers: a slow App backend cannot
	// take them all from the others.
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
	b.ConsecutiveFailures = cmp.Or(b.ConsecutiveFailures, defaultBreakerConsecutive)
	b.FailureRatio = cmp.Or(b.FailureRatio, defaultBreakerRatio)
	b.MinCalls = cmp.Or(b.MinCalls, defaultBreakerMinCalls)
	b.Window = cmp.Or(b.Window, defaultBreakerWindow)
	b.Cooldown = cmp.Or(b.Cooldown, defaultBreakerCooldown)
	return nil
}

// validate checks l and applies its defaults; workers is Config.Workers.
func (l *AfterLimit) validate(workers int) error {
	if l.Burst < 0 || l.Concurrency < 0 {
		return fmt.Errorf("%w: AfterLimit.Burst or Concurrency is negative", ErrInvalidConfig)
	}
	l.Rate = cmp.Or(l.Rate, defaultAfterRate)
	if l.Burst == 0 {
		l.Burst = max(1, int(l.Rate/10))
	}
	l.Concurrency = cmp.Or(l.Concurrency, workers)
	return nil
}

// checkRules rejects an invalid command name (empty, or not printable:
// see checkCommand) and a negative timeout.
func checkRules(rules map[string]Rule) error {
	for cmd, r := range rules {
		if cmd == "" {
			return fmt.Errorf("%w: empty command name in Commands: %w", ErrInvalidConfig, ErrInvalidCommand)
		}
		if err := checkCommand(cmd); err != nil {
			return fmt.Errorf("%w: a command name in Commands: %w", ErrInvalidConfig, err)
		}
		if r.Timeout < 0 {
			return fmt.Errorf("%w: command %q has a negative Timeout", ErrInvalidConfig, cmd)
		}
	}
	return nil
}

// rule returns the settings of command in Config.Commands, with its
// timeout resolved: the failure policy of a call whose app's endpoint
// could not be resolved.
func (s *settings) rule(command string) Rule {
	r := s.Commands[command]
	r.Timeout = cmp.Or(r.Timeout, s.Timeout)
	return r
}

// checkSchedule validates Config.RetrySchedule and applies its default.
func (s *settings) checkSchedule() error {
	if s.RetrySchedule == nil {
		s.RetrySchedule = defaultRetrySchedule
		return nil
	}
	for i, w := range s.RetrySchedule {
		if w < 0 {
			return fmt.Errorf("%w: RetrySchedule[%d] is negative", ErrInvalidConfig, i)
		}
	}
	s.RetrySchedule = append([]time.Duration(nil), s.RetrySchedule...)
	return nil
}

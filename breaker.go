package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// newBreaker returns the circuit breaker of the endpoint named logURL,
// tripped as b says (see Breaker), that calls changed on every change of
// state, with the breaker's lock held.
func newBreaker(b Breaker, logURL string, changed func(from, to gobreaker.State)) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
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
			changed(from, to)
		},
	})
}

// stateChanged logs a transition. It runs with the breaker's lock held, so
// it never calls the breaker.
func (e *urlState) stateChanged(log *slog.Logger, from, to gobreaker.State) {
	msg, attrs := "callback: circuit breaker "+to.String(), []any{
		slog.String("url", e.logURL),
		slog.String("from", from.String()),
	}
	if to == gobreaker.StateOpen {
		e.halfOpen.Store(time.Now().Add(e.cooldown).UnixNano())
		e.open.Store(true)
		log.Error(msg, attrs...)
	} else {
		e.open.Store(false)
		log.Info(msg, attrs...)
	}
}

// errAbandoned marks a call its caller gave up on: not the endpoint's fault.
var errAbandoned = errors.New("callback: call abandoned by its caller")

// errFailedStatus marks an answer that counts as an endpoint failure.
var errFailedStatus = errors.New("callback: failed status")

// errPoolWait marks a Before call that ended while it waited for a pooled
// connection: nothing reached the App backend and the wait (behind the
// Dispatcher's connection cap) is not its fault. It is a kind of
// errAbandoned, excluded from the breaker.
var errPoolWait = fmt.Errorf("%w: waiting for a pooled connection", errAbandoned)

// connWait tells whether a Before call that timed out did so waiting for
// a pooled connection. It did not if the wait ended (a dial started for
// it, or it was given a connection) in the first half of the call's time:
// the App backend then had at least half of it to connect and answer, and
// a stalled dial or a hung answer is its failure. A call that spent most
// of its time queued behind the cap, and was only handed a connection or
// a dial near its end (when the calls queued together all reach their
// deadline at once, say), timed out in the Dispatcher's queue. Any other
// error is the endpoint's.
type connWait struct {
	begin   time.Time
	reached atomic.Int64 // UnixNano when the wait ended for it; 0: it did not
}

// trace returns ctx with a ClientTrace that records into w. It installs no
// Got1xxResponse hook (see newTransport).
func (w *connWait) trace(ctx context.Context) context.Context {
	w.begin = time.Now()
	done := func() { w.reached.CompareAndSwap(0, time.Now().UnixNano()) }
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		DNSStart:     func(httptrace.DNSStartInfo) { done() },
		ConnectStart: func(string, string) { done() },
		GotConn:      func(httptrace.GotConnInfo) { done() },
	})
}

// outcome is breakerOutcome for a Before call traced by w: a timeout in
// the wait for a pooled connection is errPoolWait. A nil w (a call that
// could not wait for the pool, so was not traced) is breakerOutcome's.
func (w *connWait) outcome(caller context.Context, res *http.Response, err error) error {
	if w != nil && err != nil && errors.Is(err, context.DeadlineExceeded) {
		end := time.Now()
		reached := w.reached.Load()
		if reached == 0 || end.Sub(time.Unix(0, reached)) < end.Sub(w.begin)/2 {
			return errPoolWait
		}
	}
	return breakerOutcome(caller, res, err)
}

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
// start is when the call began: it marks the endpoint used without a
// clock read of its own (on a VM a clock read can cost 100-200 ns).
func (e *urlState) allow(start time.Time) (done func(error), err error) {
	e.used.Store(start.UnixNano())
	if e.breaker == nil {
		return reportNothing, nil
	}
	if e.open.Load() && time.Now().UnixNano() < e.halfOpen.Load() {
		return nil, errOpen // refused without the breaker's lock
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

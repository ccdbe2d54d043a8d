package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// settleTimeout bounds one call settling a Delivery (an ack, a retry, a
// dead letter written to a durable store).
const settleTimeout = 10 * time.Second

// Waits of a worker whose Queue.Get fails, doubling from the first to the
// last while the failures go on.
const (
	getPauseMin = 100 * time.Millisecond
	getPauseMax = 5 * time.Second
)

// deliverOnce makes one attempt at a handed-out event and settles its
// Delivery as the Queue's contract says. The memory queue hands out an
// event with its endpoint's permit already taken; for a Config.Queue the
// permit is taken here, without waiting: an event whose endpoint cannot
// take it now is handed back with a delay (postpone), so a dead App
// backend's events never hold the workers. wctx is the worker's context,
// a child of d.life.
func (d *Dispatcher) deliverOnce(wctx context.Context, dl Delivery) {
	ev := dl.Event()
	if ev.ID == "" {
		ev.ID = d.eventID(ev.seq) // the memory queue's: formatted here, not in After
	}
	stats := d.obs.command(ev.Command)
	var p permit
	if pd, ok := dl.(interface{ permit() permit }); ok {
		p = pd.permit()
	}
	r, err := d.routeOfEvent(&ev)
	if err == nil && d.urls.forRoute(r).refuse(r.disabled) != nil {
		d.deadLetterDisabled(dl, ev, r, p, stats)
		return
	}
	if err == nil && !p.valid() && d.mem == nil && d.life.Err() == nil {
		e := d.urls.forRoute(r)
		now := time.Now()
		var wake time.Time
		var ok bool
		if p, wake, ok = e.take(now); !ok {
			d.attempts.postponed(&ev, r)
			d.postpone(dl, ev, e.later(now, wake))
			return
		}
	}
	ev.Attempts++ // this hand-out
	var retry, sent bool
	var res *http.Response
	if err != nil {
		// A store that is down may be back later; an app that is unknown
		// or invalid will not be.
		retry = !errors.Is(err, ErrUnknownApp) && !errors.Is(err, ErrInvalidConfig)
		d.afterAttempt(&ev, nil, time.Time{}, 0, nil, retry, err)
	} else {
		retry, sent, res, err = d.attempt(wctx, &ev, r, stats, p)
	}
	if err == nil {
		d.deliveryDone(stats, nil)
		if d.mem != nil {
			_ = dl.Ack(d.life) // the memory queue's never fails nor waits: no timeout needed
			return
		}
		d.settle(ev, "ack", func(ctx context.Context) error { return dl.Ack(ctx) })
		return
	}
	if d.mem != nil {
		d.memoryFailed(dl, ev, sent, retry, res, stats, err)
		return
	}
	if d.life.Err() != nil {
		// Close's deadline cut the attempt short: the event is not lost,
		// the Queue hands it out again, here after a restart or elsewhere.
		d.settle(ev, "retry", func(ctx context.Context) error { return dl.Retry(ctx, 0) })
		return
	}
	if retry && ev.Attempts <= len(d.s.RetrySchedule) {
		wait := d.s.RetrySchedule[ev.Attempts-1]
		d.settle(ev, "retry", func(ctx context.Context) error { return dl.Retry(ctx, wait) })
		return
	}
	if !d.settle(ev, "dead letter", func(ctx context.Context) error { return dl.DeadLetter(ctx, err) }) {
		// Not stored as a dead letter: keep it in the queue rather than
		// lose it; it comes back after the schedule's last wait.
		wait := defaultRetrySchedule[0]
		if n := len(d.s.RetrySchedule); n > 0 {
			wait = d.s.RetrySchedule[n-1]
		}
		d.settle(ev, "retry", func(ctx context.Context) error { return dl.Retry(ctx, wait) })
		return
	}
	d.deliveryDone(stats, err)
	d.deadLetter(ev, err)
}

// memoryFailed settles a failed attempt at a memory event: a retry after
// go-retryablehttp's backoff (Config.Retries, RetryWaitMin and
// RetryWaitMax; a Retry-After honoured, capped at RetryWaitMax), waited
// for in the queue, or a dead letter. Once Close's deadline has passed,
// every event is dead-lettered with an error wrapping ErrClosed.
func (d *Dispatcher) memoryFailed(dl Delivery, ev Event, sent, retry bool, res *http.Response, stats *commandStats, err error) {
	closed := d.life.Err() != nil
	if !closed && retry && ev.Attempts <= d.s.Retries {
		wait := backoff(d.s.RetryWaitMin, d.s.RetryWaitMax, d.s.RetryWaitMax, ev.Attempts-1, res)
		_ = dl.Retry(d.life, wait) // the memory queue's never fails
		return
	}
	if closed {
		err = fmt.Errorf("%w before delivery: %w", ErrClosed, err)
	}
	if !sent {
		ev.Attempts-- // this hand-out made no request
	}
	// The hook first: settling lets the next event of ev's order key go,
	// whose dead letter, at Close's deadline, must come after this one.
	d.deliveryDone(stats, err)
	d.deadLetter(ev, err)
	_ = dl.DeadLetter(d.life, err) // the memory queue's never fails
}

// postpone hands back an event whose endpoint cannot take it now, to be
// handed out again after delay: with Postponer.Postpone when the Queue
// has it, so that the hand-out is not counted as an attempt, and with
// Retry otherwise.
func (d *Dispatcher) postpone(dl Delivery, ev Event, delay time.Duration) {
	if pp, ok := dl.(Postponer); ok {
		d.settle(ev, "postpone", func(ctx context.Context) error { return pp.Postpone(ctx, delay) })
		return
	}
	d.settle(ev, "retry", func(ctx context.Context) error { return dl.Retry(ctx, delay) })
}

// attempt sends ev once under permit p, which it ends, with a timeout
// context derived from wctx. It reports whether
// a failure may succeed later (a transport error, 408, 429 or 5xx but
// 501), whether the request went out, and the answer, whose body is
// closed.
func (d *Dispatcher) attempt(wctx context.Context, ev *Event, r *route, stats *commandStats, p permit) (retry, sent bool, res *http.Response, err error) {
	var start time.Time    // when the request went out, and how long
	var took time.Duration // until the answer's headers: for the attempt log
	wctx, span := d.trace.startAttempt(wctx, ev, r)
	ev.traceID = traceIDOf(wctx)
	defer func() {
		if p.valid() {
			p.abandon() // no request was made
		}
		d.afterAttempt(ev, r, start, took, res, retry, err)
		endAttempt(span, d.attemptOutcome(ev, retry, err), err)
	}()
	if err := d.life.Err(); err != nil {
		return false, false, nil, err
	}
	// One context per attempt: its timeout, which also bounds reading the
	// answer (drained and closed here, before cancel).
	ctx, cancel := context.WithTimeout(wctx, r.rule(ev.Command).Timeout)
	defer cancel()
	c := eventCall(ev)
	req, err := r.newRequest(ctx, c, ev.Body)
	if err != nil {
		return false, false, nil, err
	}
	d.setHeaders(req.Header, ev.ID)
	d.trace.inject(ctx, req.Header)
	// Signed afresh per attempt: a Standard Webhooks timestamp or a
	// Tencent RequestTime must be new.
	r.sender.Sign(req, c, ev.Body, d.now())
	start = stats.attemptStart(ev.Attempts)
	res, err = do(d.transport, req)
	sent = true // do hands every well-formed request to the transport
	// The breaker hears the outcome: d.life, not ctx, tells an attempt that
	// Close cut short from one that the App backend failed.
	p.end(d.life, res, err)
	p = permit{}
	took = stats.attemptEnd(ctx, start, res, err)
	if err != nil {
		retry, _ = retryPolicy(d.life, nil, err)
		return retry, sent, nil, r.redact(err)
	}
	traceResponse(ctx, res)
	defer res.Body.Close()
	defer drain(res.Body)
	if err := checkStatus(res); err != nil {
		retry, _ = retryPolicy(d.life, res, nil)
		return retry, sent, res, d.urls.forRoute(r).goneErr(res, err)
	}
	return false, sent, res, nil
}

// settle runs one settling call of a Delivery, bounded by settleTimeout,
// and logs its failure. It reports whether the call succeeded.
func (d *Dispatcher) settle(ev Event, what string, call func(context.Context) error) bool {
	// Settling must outlive Close's deadline: an attempt that it cut short
	// is handed back to the queue after it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.life), settleTimeout)
	defer cancel()
	err := call(ctx)
	if err == nil {
		return true
	}
	d.log.LogAttrs(ctx, slog.LevelError, "callback: after event not settled in its queue",
		slog.String("settle", what),
		slog.Int("app_id", ev.AppID),
		slog.String("command", ev.Command),
		slog.String("webhook_id", ev.ID),
		slog.Int("attempt", ev.Attempts),
		slog.String("error", err.Error()),
	)
	return false
}

// queueFailed logs a failed Queue.Get and waits before the next one, or
// until Close starts. It returns the next wait.
func (d *Dispatcher) queueFailed(err error, pause time.Duration) time.Duration {
	if pause == 0 {
		// Only the first failure of a run is logged, not one per retry.
		d.log.LogAttrs(d.life, slog.LevelError, "callback: after queue failed",
			slog.String("error", err.Error()))
		pause = getPauseMin
	}
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-d.stopping.Done():
	}
	return min(2*pause, getPauseMax)
}

package callback

import (
	"bytes"
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

// deliverOnce makes one attempt at an event of a Config.Queue and settles
// its Delivery as the Queue's contract says.
func (d *Dispatcher) deliverOnce(dl Delivery) {
	ev := dl.Event()
	ev.Attempts++ // this hand-out
	stats := d.obs.command(ev.Command)
	retry, err := d.attempt(ev, stats)
	if err == nil {
		d.deliveryDone(stats, nil)
		d.settle(ev, "ack", func(ctx context.Context) error { return dl.Ack(ctx) })
		return
	}
	if d.life.Err() != nil || d.stopping.Err() != nil && errors.Is(err, context.Canceled) {
		// Close's deadline cut the attempt short, or Close ended its wait
		// for the endpoint: the event is not lost, the Queue hands it out
		// again, here after a restart or elsewhere.
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

// attempt sends ev once. It reports whether a failure may succeed later:
// a transport error, 408, 429 or 5xx but 501.
func (d *Dispatcher) attempt(ev Event, stats *commandStats) (retry bool, err error) {
	if err := d.life.Err(); err != nil {
		return false, err
	}
	r, err := d.routeOfEvent(&ev)
	if err != nil {
		// A store that is down may be back later; an app that is unknown
		// or invalid will not be.
		return !errors.Is(err, ErrUnknownApp) && !errors.Is(err, ErrInvalidConfig), err
	}
	a := d.attemptsOf(&ev, r, stats)
	a.n = ev.Attempts - 1 // earlier hand-outs: this attempt counts as a retry after the first
	// The event is safe in the Queue: once Close starts, it stops waiting
	// for an open breaker or the After limits and is handed back.
	a.wait = d.stopping
	ctx := context.WithValue(d.life, attemptKey{}, a)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, eventURL(&ev, r), bytes.NewReader(ev.Body))
	if err != nil {
		return false, err
	}
	d.setHeaders(req.Header, ev.ID)
	res, err := d.client.Do(req)
	if err != nil {
		retry, _ = retryPolicy(d.life, nil, err)
		return retry, r.redact(err)
	}
	defer res.Body.Close()
	defer drain(res.Body)
	if err := checkStatus(res); err != nil {
		retry, _ = retryPolicy(d.life, res, nil)
		return retry, err
	}
	return false, nil
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

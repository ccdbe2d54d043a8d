package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// After queues an event for delivery to the App backend and returns at once;
// it never waits for the network. A pool of workers delivers it, retrying
// transport errors, 408, 429 and 5xx with backoff; an event that cannot be
// delivered goes to Config.DeadLetter and the error log.
//
// It returns ErrQueueFull when the queue is full, ErrClosed after Close,
// ErrInvalidBody for a body that is not valid JSON, ErrInvalidCommand for an
// empty command and ctx's error if ctx has already ended; nothing is queued
// then. A disabled command is accepted and dropped: After returns nil.
//
// With Config.Queue set, After returns once the Queue has stored the event
// (for a durable Queue, once it is persisted; ctx bounds the wait) and
// returns the Queue's error otherwise; the event is then retried on
// Config.RetrySchedule (see Queue).
//
// After copies body, so the caller may reuse it. Delivery does not use ctx:
// the event outlives the call.
func (d *Dispatcher) After(ctx context.Context, appID int, command string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkEvent(command, body); err != nil {
		return err
	}
	if d.s.rule(command).Disabled {
		return nil
	}
	if d.isClosed.Load() {
		return ErrClosed // the queue says so too; this spares the copy
	}
	ev := Event{ID: d.eventID(d.seq.Add(1)), AppID: appID, Command: command, Body: append([]byte(nil), body...)}
	return d.queue.Put(ctx, ev)
}

// work delivers queued events until Close has stopped the queue and it
// has nothing more to hand out. Once Close's deadline has passed,
// deliveries fail at once: memory events go to the dead-letter hook,
// events of a Config.Queue go back to it.
func (d *Dispatcher) work() {
	defer func() {
		if d.live.Add(-1) == 0 {
			close(d.drained)
		}
	}()
	var pause time.Duration
	for {
		dl, err := d.queue.Get(d.life)
		if err != nil {
			if errors.Is(err, ErrClosed) || d.life.Err() != nil {
				return
			}
			pause = d.queueFailed(err, pause)
			continue
		}
		pause = 0
		if d.inWorker {
			d.deliver(dl.Event())
		} else {
			d.deliverOnce(dl)
		}
	}
}

// deliver sends one event, with retries, and dead-letters it on failure.
func (d *Dispatcher) deliver(ev Event) {
	a := &attempts{timeout: d.s.rule(ev.Command).Timeout}
	err := d.send(ev, a)
	if err == nil {
		return
	}
	if d.life.Err() != nil {
		err = fmt.Errorf("%w before delivery: %w", ErrClosed, err)
	}
	ev.Attempts = a.n
	d.deadLetter(ev, err)
}

func (d *Dispatcher) send(ev Event, a *attempts) error {
	if err := d.life.Err(); err != nil {
		return err // Close's deadline has passed: do not start
	}
	ctx := context.WithValue(d.life, attemptKey{}, a)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, d.target.url(d.wire, ev.AppID, ev.Command), ev.Body)
	if err != nil {
		return err
	}
	d.setHeaders(req.Header, ev.ID)
	res, err := d.retry.Do(req)
	if res != nil {
		defer res.Body.Close()
		defer drain(res.Body)
		// The last answer's status decides: a 2xx was delivered even if the
		// context ended just after it, and a status says more than
		// retryablehttp's "giving up".
		return checkStatus(res)
	}
	return d.redact(err)
}

// deadLetter logs an undelivered event and hands it to Config.DeadLetter.
func (d *Dispatcher) deadLetter(ev Event, err error) {
	d.log.LogAttrs(d.life, slog.LevelError, "callback: after event not delivered",
		slog.Int("app_id", ev.AppID),
		slog.String("command", ev.Command),
		slog.String("url", d.target.logURL),
		slog.String("webhook_id", ev.ID),
		slog.Int("attempt", ev.Attempts),
		slog.Int("body_bytes", len(ev.Body)),
		slog.String("error", err.Error()),
	)
	if d.s.DeadLetter == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			d.log.LogAttrs(d.life, slog.LevelError, "callback: DeadLetter hook panicked",
				slog.String("webhook_id", ev.ID),
				slog.String("panic", fmt.Sprint(p)),
				slog.String("stack", string(debug.Stack())),
			)
		}
	}()
	d.s.DeadLetter(ev, err)
}

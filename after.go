package callback

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/hashicorp/go-retryablehttp"
)

// After queues an event for delivery to the App backend and returns at once;
// it never waits for the network. A pool of workers delivers it, retrying
// transport errors, 408, 429 and 5xx with backoff; an event that cannot be
// delivered goes to Config.DeadLetter and the error log.
//
// It returns ErrQueueFull when the queue is full, ErrClosed after Close,
// ErrInvalidBody for a body that is not valid JSON, ErrInvalidCommand for an
// empty command, an error wrapping ErrResolve when Config.Resolver cannot
// resolve the app's endpoint, and ctx's error if ctx has already ended;
// nothing is queued then. A disabled command is accepted and dropped: After
// returns nil.
//
// With a Resolver, the endpoint is resolved here, once, and the event is
// delivered to it: a change of the app's settings applies to the events
// After accepts from then on, not to those already queued.
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
	r, err := d.routeOf(ctx, appID)
	if err != nil {
		return err
	}
	if r.rule(command).Disabled {
		return nil
	}
	ev := &event{appID: appID, command: command, body: append([]byte(nil), body...), seq: d.seq.Add(1), route: r}
	if r.wire.usesClient() {
		ev.client = clientFrom(ctx) // ctx ends with the call; the event lives on
	}

	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	select {
	case d.queue <- ev:
		return nil
	default:
		return ErrQueueFull
	}
}

// work delivers queued events until Close has closed the queue and it is
// empty. Once Close's deadline has passed, deliveries fail at once and go to
// the dead-letter hook.
func (d *Dispatcher) work() {
	defer func() {
		if d.live.Add(-1) == 0 {
			close(d.drained)
		}
	}()
	for ev := range d.queue {
		d.deliver(ev)
	}
}

// deliver sends one event, with retries, and dead-letters it on failure.
func (d *Dispatcher) deliver(ev *event) {
	id := d.eventID(ev.seq)
	a := &attempts{timeout: ev.route.rule(ev.command).Timeout}
	err := d.send(ev, id, a)
	if err == nil {
		return
	}
	if d.life.Err() != nil {
		err = fmt.Errorf("%w before delivery: %w", ErrClosed, err)
	}
	d.deadLetter(ev.route, Event{ID: id, AppID: ev.appID, Command: ev.command, Body: ev.body, Attempts: a.n}, err)
}

func (d *Dispatcher) send(ev *event, id string, a *attempts) error {
	if err := d.life.Err(); err != nil {
		return err // Close's deadline has passed: do not start
	}
	r := ev.route
	if r.wire.signs() {
		// Each attempt is signed afresh as it is sent (attemptTransport):
		// a Standard Webhooks timestamp or Tencent RequestTime must be new.
		a.sign = func(req *http.Request) { r.wire.sign(req, id, ev.body, d.now()) }
	}
	ctx := context.WithValue(d.life, attemptKey{}, a)
	c := call{appID: ev.appID, command: ev.command, client: ev.client}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, r.target.url(r.wire, &c), ev.body)
	if err != nil {
		return err
	}
	d.setHeaders(req.Header, id)
	res, err := d.retry.Do(req)
	if res != nil {
		defer res.Body.Close()
		defer drain(res.Body)
		// The last answer's status decides: a 2xx was delivered even if the
		// context ended just after it, and a status says more than
		// retryablehttp's "giving up".
		return checkStatus(res)
	}
	return r.redact(err)
}

// deadLetter logs an undelivered event and hands it to Config.DeadLetter.
func (d *Dispatcher) deadLetter(r *route, ev Event, err error) {
	d.log.LogAttrs(d.life, slog.LevelError, "callback: after event not delivered",
		slog.Int("app_id", ev.AppID),
		slog.String("command", ev.Command),
		slog.String("url", r.target.logURL),
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

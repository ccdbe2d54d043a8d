package callback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/imcallback/callback/format"
)

// After queues an event for delivery to the App backend and returns at once;
// it never waits for the network. A pool of workers delivers it, retrying
// transport errors, 408, 429 and 5xx with backoff; an event that cannot be
// delivered goes to Config.DeadLetter and the error log.
//
// It returns ErrQueueFull when the queue is full, ErrClosed after Close,
// ErrInvalidBody for a body that is not valid JSON, ErrInvalidCommand for an
// empty or unprintable command name, ErrInvalidEventID for a bad WithEventID,
// ErrInvalidOrderKey for a bad WithOrderKey, an error wrapping
// ErrResolve when Config.Resolver cannot resolve the app's endpoint, and
// ctx's error if ctx has already ended; nothing is queued then. With a
// Config.Queue it also returns the Queue's error (natsqueue: one wrapping
// natsqueue.ErrPublish), and then the event may have been stored all the
// same: retry with the same WithEventID so it is stored and delivered under
// one ID. A disabled command is accepted and dropped: After
// returns nil.
//
// With a Resolver, the endpoint is resolved here, so a bad app is the
// caller's error. The memory queue's event keeps that endpoint: a change
// of the app's settings applies to the events accepted from then on, not
// to those already queued. A Config.Queue stores no endpoint: its events
// are resolved again when handed out, so a change applies to them too.
//
// With Config.Queue set, After returns once the Queue has stored the event
// (for a durable Queue, once it is persisted; ctx bounds the wait) and
// returns the Queue's error otherwise; the event is then retried on
// Config.RetrySchedule (see Queue).
//
// Under an order key (WithOrderKey), one app's events of one key are
// delivered one at a time, in the order After accepted them.
//
// After copies body, so the caller may reuse it. Delivery does not use ctx:
// the event outlives the call.
func (d *Dispatcher) After(ctx context.Context, appID int, command string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return d.refused(ctx, appID, command, body, nil, err)
	}
	if err := d.checkEvent(command, body); err != nil {
		return d.refused(ctx, appID, command, body, nil, err)
	}
	id, givenID, err := eventIDFrom(ctx)
	if err != nil {
		return d.refused(ctx, appID, command, body, nil, err)
	}
	key, keyHash, err := orderKeyFrom(ctx)
	if err != nil {
		return d.refused(ctx, appID, command, body, nil, err)
	}
	r, err := d.routeOf(ctx, appID)
	if ruleOf(r, &d.s, command).Disabled {
		return nil // nothing would be sent, resolved or not
	}
	if err != nil {
		return d.refused(ctx, appID, command, body, nil, err)
	}
	if d.isClosed.Load() {
		return d.refused(ctx, appID, command, body, r, ErrClosed) // the queue says so too; this spares the copy
	}
	stats := d.obs.command(command)
	var e *urlState // the memory queue's endpoint
	disabled := false
	if d.mem != nil {
		e = d.urls.forRoute(r)
		disabled = e.refuse(r.disabled) != nil
		if !disabled && d.mem.full(e) {
			// Refused before the event is built: no copy, no clock. put
			// checks again under its lock.
			stats.rejected()
			d.refusedFull(ctx, appID, command, body, r, e)
			return ErrQueueFull
		}
	}
	ev := Event{AppID: appID, Command: command, Body: append([]byte(nil), body...), Queued: clockNow(), seq: d.seq.Add(1), route: r, OrderKey: key}
	switch {
	case givenID:
		ev.ID = id
	case d.mem == nil:
		// A Queue stores the ID with the event, so that every hand-out on
		// every node sends the same one. The memory queue formats it when
		// the event is delivered, sparing After an allocation.
		ev.ID = d.eventID(ev.seq)
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() { // one lookup when untraced
		ev.Trace, ev.traceID = d.trace.carry(ctx), sc.TraceID()
	}
	if c := deviceFrom(ctx); c != (device{}) { // ctx ends with the call; the event lives on
		ev.ClientIP, ev.Platform = c.ip, c.platform
	}
	if disabled {
		d.afterDisabled(ev, r, stats) // a durable Queue's worker dead-letters it into its store
		return nil
	}
	var ahead eventRef // the event ev waits for under its order key
	if d.mem != nil {
		ahead, err = d.mem.put(e, &ev, keyHash)
	} else {
		e = d.urls.forRoute(r)
		err = d.queue.Put(ctx, ev)
	}
	switch {
	case err == nil:
		d.attempts.queued(&ev, ahead, nil)
		e.accepted()
		if d.mem == nil {
			// The memory queue notes the demand itself. A durable Queue's
			// event is seen again only when handed out, which may not be
			// soon while another endpoint holds every worker: note it now,
			// so the fair share counts this endpoint as active.
			e.wanted(ev.Queued)
		}
		stats.queued()
		return nil
	case errors.Is(err, ErrQueueFull):
		stats.rejected()
		if d.attempts != nil && e.refusedFirst() {
			d.attempts.queued(&ev, ahead, err)
		}
		return err
	default:
		d.attempts.queued(&ev, ahead, err)
		return err
	}
}

// work delivers queued events, one attempt per hand-out (deliverOnce),
// until Close has stopped the queue and it
// has nothing more to hand out. Once Close's deadline has passed,
// deliveries fail at once: memory events go to the dead-letter hook,
// events of a Config.Queue go back to it.
func (d *Dispatcher) work() {
	defer func() {
		if d.live.Add(-1) == 0 {
			close(d.drained)
		}
	}()
	// Each attempt's timeout context is a child of this worker's own, not
	// of d.life: the children of one context are registered under its
	// lock, which the workers would otherwise all take twice per attempt.
	wctx, cancel := context.WithCancel(d.life)
	defer cancel()
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
		d.deliverOnce(wctx, dl)
	}
}

// refused records an After call refused before its event was queued in
// the attempt log (OutcomeRejected), under the ID given with WithEventID
// if a valid one was, and returns err. r is nil when the app did not
// resolve.
func (d *Dispatcher) refused(ctx context.Context, appID int, command string, body []byte, r *route, err error) error {
	if d.attempts != nil {
		id, _, _ := eventIDFrom(ctx)
		key, _, _ := orderKeyFrom(ctx) // "" when not valid: the log keeps no such key
		d.attempts.queued(&Event{ID: id, AppID: appID, Command: command, Body: body, route: r, OrderKey: key}, eventRef{}, err)
	}
	return err
}

// clockEpoch is when the package was loaded: see clockNow.
var clockEpoch = time.Now()

// clockNow is time.Now read from the monotonic clock alone: the wall
// time of clockEpoch plus the monotonic time since, which costs half a
// time.Now (one clock read, not two; ~100 ns on a VM's kvm-clock). It
// keeps its monotonic reading, so durations against time.Now are exact;
// its wall time misses only the steps of the wall clock since the
// package was loaded (a settimeofday, not NTP's slewing, which the
// monotonic clock follows).
func clockNow() time.Time { return clockEpoch.Add(time.Since(clockEpoch)) }

// refusedFull records in the attempt log an After call refused with
// ErrQueueFull, when it is the first refusal of a burst for endpoint e
// (see urlState.refusedFirst); the others are counted by Stats and the
// metrics only, so that a full queue costs a refused After no lock.
func (d *Dispatcher) refusedFull(ctx context.Context, appID int, command string, body []byte, r *route, e *urlState) {
	if d.attempts != nil && e.refusedFirst() {
		d.refused(ctx, appID, command, body, r, ErrQueueFull)
	}
}

// routeOfEvent returns the route of ev: the one After resolved or, for an
// event handed out by a Config.Queue (which stores no route), the app's
// endpoint resolved again now.
func (d *Dispatcher) routeOfEvent(ev *Event) (*route, error) {
	if ev.route != nil {
		return ev.route, nil
	}
	return d.routeOf(d.life, ev.AppID)
}

// eventCall returns what addresses ev.
func eventCall(ev *Event) format.Call {
	return format.Call{AppID: ev.AppID, Command: ev.Command, EventID: ev.ID, ClientIP: ev.ClientIP, Platform: ev.Platform}
}

// deadLetter logs an undelivered event (flood-controlled) and hands it to
// Config.DeadLetter.
func (d *Dispatcher) deadLetter(ev Event, err error) {
	d.trace.deadLettered(&ev, err)
	d.afterLog.fail(d.life, failure{appID: ev.AppID, command: ev.Command, webhookID: ev.ID, attempts: ev.Attempts, bodyBytes: len(ev.Body), err: err})
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

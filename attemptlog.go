package callback

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// attemptLog is a ring of the last records: each writer takes a sequence
// number with one atomic add and fills its slot under the slot's own
// lock, which only a reader copying the same slot or a writer a whole
// ring later contends for. Strings and errors are shared, not copied;
// nothing is allocated but a body's copy with AttemptBodies. A nil
// *attemptLog is the log turned off: every method is then a no-op.
type attemptLog struct {
	slots  []slot
	next   atomic.Uint64 // last Seq handed out
	bodies bool          // Config.AttemptBodies
	// epoch is when the log was made: see now.
	epoch time.Time
}

// slot holds one record.
type slot struct {
	mu  sync.Mutex // guards rec
	rec record
}

// record is an Attempt as stored: the text of an error and the webhook-id
// of a memory event are made when read, not when recorded.
type record struct {
	seq      uint64
	at       time.Time
	latency  time.Duration
	kind     uint8 // 0 before, 1 after
	outcome  Outcome
	appID    int
	command  string
	id       string // the webhook-id; "" for a memory event, named by idSeq
	idSeq    uint64 // 0 with id "": an After refused before it had an ID
	attempt  int
	status   int
	err      error
	endpoint string
	body     []byte
	key      string        // the event's order key
	ahead    eventRef      // the event it waits for under its key, when queued behind one
	trace    trace.TraceID // zero: none
}

// newAttemptLog returns the log Config.AttemptLog asks for, or nil.
func newAttemptLog(s *settings) *attemptLog {
	if s.AttemptLog < 0 {
		return nil
	}
	return &attemptLog{slots: make([]slot, s.AttemptLog), bodies: s.AttemptBodies, epoch: time.Now()}
}

// lock takes the next Seq and returns its slot, locked, for the caller to
// fill and unlock; nil when a writer a whole ring later came first.
func (l *attemptLog) lock() (*slot, uint64) {
	seq := l.next.Add(1)
	s := &l.slots[seq%uint64(len(l.slots))]
	s.mu.Lock()
	if s.rec.seq > seq {
		s.mu.Unlock()
		return nil, 0
	}
	return s, seq
}

// body returns what a record keeps of body: a copy with AttemptBodies,
// nil otherwise.
func (l *attemptLog) body(body []byte) []byte {
	if !l.bodies || body == nil {
		return nil
	}
	return append([]byte(nil), body...)
}

// before records a Before call that began at start, took latency (as the
// metrics measured it: the log reads no clock) and returned resp; r is
// the app's route (nil: not resolved).
func (l *attemptLog) before(ctx context.Context, r *route, appID int, command, id string, start time.Time, latency time.Duration, resp Response, body []byte) {
	if l == nil {
		return
	}
	status, endpoint := 200, ""
	if resp.Err != nil {
		status = statusOf(resp.Err)
	}
	if r != nil {
		endpoint = r.target.logURL
	}
	b := l.body(body)
	s, seq := l.lock()
	if s == nil {
		return
	}
	s.rec = record{
		seq: seq, at: start.Add(latency), latency: latency, kind: 0,
		outcome: beforeOutcomes[beforeOutcome(resp)],
		appID:   appID, command: command, id: id, attempt: 1, status: status,
		err: resp.Err, endpoint: endpoint, body: b, trace: traceIDOf(ctx),
	}
	s.mu.Unlock()
}

var beforeOutcomes = [...]Outcome{
	outAllowed: OutcomeAllowed, outDenied: OutcomeDenied, outDropped: OutcomeDropped,
	outFailedOpen: OutcomeFailedOpen, outFailedClosed: OutcomeFailedClosed,
	outShadowAllowed: OutcomeShadowAllowed, outShadowDenied: OutcomeShadowDenied,
	outShadowDropped: OutcomeShadowDropped,
}

// queued records After's acceptance (err nil) or refusal of ev; ahead
// names the event it waits for under its order key, if any.
func (l *attemptLog) queued(ev *Event, ahead eventRef, err error) {
	if l == nil {
		return
	}
	out, at, endpoint := OutcomeQueued, ev.Queued, ""
	if err != nil {
		out, at = OutcomeRejected, l.now()
	}
	if ev.route != nil {
		endpoint = ev.route.target.logURL
	}
	b := l.body(ev.Body)
	s, seq := l.lock()
	if s == nil {
		return
	}
	s.rec = record{
		seq: seq, at: at, kind: 1, outcome: out,
		appID: ev.AppID, command: ev.Command, id: ev.ID, idSeq: ev.seq,
		err: err, endpoint: endpoint, body: b, key: ev.OrderKey, ahead: ahead, trace: ev.traceID,
	}
	s.mu.Unlock()
}

// afterAttempt records one attempt at ev (ev.Attempts is its number),
// sent at began and answered took later as the metrics timed it (the log
// reads no clock for a request that went out; a zero began for none), with the outcome deliverOnce
// gives it: delivered, retried or dead-lettered, by the same rules.
func (d *Dispatcher) afterAttempt(ev *Event, r *route, began time.Time, took time.Duration, res *http.Response, retry bool, err error) {
	l := d.attempts
	if l == nil {
		return
	}
	out := d.attemptOutcome(ev, retry, err)
	status := 0
	if res != nil {
		status = res.StatusCode
	}
	if began.IsZero() {
		began, took = l.now(), 0
	}
	l.after(ev, r, out, began.Add(took), took, ev.Attempts, status, err)
}

// attemptOutcome is the outcome of an attempt at ev that ended with err:
// delivered, retried or dead-lettered, by deliverOnce's rules.
func (d *Dispatcher) attemptOutcome(ev *Event, retry bool, err error) Outcome {
	if err == nil {
		return OutcomeDelivered
	}
	closed := d.life.Err() != nil
	switch {
	case d.mem != nil && !closed && retry && ev.Attempts <= d.s.Retries,
		d.mem == nil && closed, // handed back to the Queue
		d.mem == nil && retry && ev.Attempts <= len(d.s.RetrySchedule):
		return OutcomeRetrying
	}
	return OutcomeDeadLettered
}

// postponed records a durable Queue's event handed back unsent: Attempt
// is the number the attempt would have had.
func (l *attemptLog) postponed(ev *Event, r *route) {
	if l == nil {
		return
	}
	l.after(ev, r, OutcomePostponed, l.now(), 0, ev.Attempts+1, 0, nil)
}

// now reads the clock: the monotonic one since the log's epoch, which
// costs half a time.Now.
func (l *attemptLog) now() time.Time { return l.epoch.Add(time.Since(l.epoch)) }

// after records an After attempt that ended at and took latency, or a
// postponement.
func (l *attemptLog) after(ev *Event, r *route, out Outcome, at time.Time, latency time.Duration, n, status int, err error) {
	if status == 0 && err != nil {
		status = statusOf(err)
	}
	endpoint := ""
	if r != nil {
		endpoint = r.target.logURL
	}
	b := l.body(ev.Body)
	s, seq := l.lock()
	if s == nil {
		return
	}
	s.rec = record{
		seq: seq, at: at, latency: latency, kind: 1, outcome: out,
		appID: ev.AppID, command: ev.Command, id: ev.ID, idSeq: ev.seq,
		attempt: n, status: status, err: err, endpoint: endpoint, body: b, trace: ev.traceID,
		key: ev.OrderKey,
	}
	s.mu.Unlock()
}

// statusError is the error of a non-2xx answer: it wraps ErrStatus or
// ErrRedirect and keeps the status for the attempt log.
type statusError struct {
	sentinel error
	status   int
}

func (e *statusError) Error() string { return e.sentinel.Error() + ": " + strconv.Itoa(e.status) }
func (e *statusError) Unwrap() error { return e.sentinel }

// statusOf returns the HTTP status an error carries, or 0.
func statusOf(err error) int {
	if se, ok := errors.AsType[*statusError](err); ok {
		return se.status
	}
	return 0
}

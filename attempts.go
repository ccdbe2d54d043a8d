package callback

import (
	"encoding/json"
	"time"
)

// maxAttemptQuery bounds how many records one AttemptQuery returns.
const maxAttemptQuery = 1 << 16

// Kinds of an Attempt.
const (
	KindBefore = "before" // a Before call
	KindAfter  = "after"  // an After event: accepted, refused, or one delivery attempt
)

// Outcome is what became of one record of the attempt log.
type Outcome string

// Outcomes of Before calls: one record per call that sent, or tried to
// send, a request (a disabled command is not recorded).
const (
	// OutcomeAllowed: the App backend allowed the event (rewritten or not).
	OutcomeAllowed Outcome = "allowed"
	// OutcomeDenied: the App backend denied it.
	OutcomeDenied Outcome = "denied"
	// OutcomeDropped: the App backend asked to drop it silently.
	OutcomeDropped Outcome = "dropped"
	// OutcomeFailedOpen: the callback failed (Error says why, ErrBreakerOpen
	// included) and the event was allowed.
	OutcomeFailedOpen Outcome = "failed-open"
	// OutcomeFailedClosed: the callback failed and the event was denied
	// (Rule.FailClosed).
	OutcomeFailedClosed Outcome = "failed-closed"
	// OutcomeShadowAllowed, OutcomeShadowDenied and OutcomeShadowDropped:
	// under a shadow rule (Rule.Shadow), the App backend's answer, which
	// Before did not enforce: the event was allowed. A failure under a
	// shadow rule is OutcomeFailedOpen.
	OutcomeShadowAllowed Outcome = "shadow-allowed"
	OutcomeShadowDenied  Outcome = "shadow-denied"
	OutcomeShadowDropped Outcome = "shadow-dropped"
)

// Outcomes of After events.
const (
	// OutcomeQueued: After accepted the event (Attempt 0); nothing is sent
	// yet.
	OutcomeQueued Outcome = "queued"
	// OutcomeRejected: After refused the event (Error says why: a full
	// queue, a durable Queue that did not store it, an invalid body or
	// command, an app that did not resolve, a closed Dispatcher, the
	// caller's ctx already ended); it was never sent. EventID is set only
	// when the refusal came after the event got one (at the queue, or one
	// given with WithEventID).
	OutcomeRejected Outcome = "rejected"
	// OutcomeDelivered: the attempt got a 2xx answer; the event is done.
	OutcomeDelivered Outcome = "delivered"
	// OutcomeRetrying: the attempt failed and the event will be tried
	// again.
	OutcomeRetrying Outcome = "retrying"
	// OutcomeDeadLettered: the attempt failed and the event was given up:
	// handed to Config.DeadLetter (and a durable Queue's dead letters).
	OutcomeDeadLettered Outcome = "dead-lettered"
	// OutcomePostponed: a durable Queue's event was handed back unsent,
	// because its endpoint could not take it then (breaker open, AfterLimit
	// reached); it does not count as an attempt.
	OutcomePostponed Outcome = "postponed"
)

// Attempt is one record of the attempt log (see Config.AttemptLog): a
// Before call, or an After event's acceptance, refusal, delivery attempt
// or postponement.
type Attempt struct {
	// Seq numbers the records of a Dispatcher from 1, in the order they
	// were recorded; a poller asks for AfterSeq of the last one it saw.
	Seq uint64 `json:"seq"`
	// Time is when the record was made: for a Before call and an After
	// attempt, when it ended.
	Time time.Time `json:"time"`
	// Kind is KindBefore or KindAfter.
	Kind    string `json:"kind"`
	AppID   int    `json:"app_id"`
	Command string `json:"command"`
	// EventID is the webhook-id the request carries (or would have).
	EventID string `json:"event_id"`
	// Attempt is the attempt's number, from 1; 0 for a record that is not
	// an attempt (OutcomeQueued, OutcomeRejected). A Before call is 1.
	Attempt int     `json:"attempt"`
	Outcome Outcome `json:"outcome"`
	// Status is the HTTP status of the answer; 0 when there was none. A
	// Before call that got its answer records 200 for any 2xx.
	Status int `json:"status"`
	// Latency is how long the Before call or the After attempt took; 0 for
	// a record that is not an attempt.
	Latency time.Duration `json:"latency_ns"`
	// Error is why the call or attempt failed, as logged: URLs without
	// their query or credentials, never a body or a secret. Empty on
	// success.
	Error string `json:"error,omitempty"`
	// Endpoint is the callback URL, named as in Stats.Breakers (without
	// user information; a query is shown as a short hash); empty when the
	// app's endpoint could not be resolved.
	Endpoint string `json:"endpoint,omitempty"`
	// OrderKey is the After event's order key (WithOrderKey); empty for
	// none.
	OrderKey string `json:"order_key,omitempty"`
	// WaitsFor is, on the OutcomeQueued record of an event that After
	// queued behind an earlier event of its order key, that event's ID:
	// the event is sent only once that one is delivered or dead-lettered
	// (and so, in turn, every event before it under the key). Empty when
	// the event went to its endpoint's queue at once, and on every other
	// record. With a Config.Queue it is empty: the Queue orders the events
	// (natsqueue reports those waiting with its WaitingForKey).
	WaitsFor string `json:"waits_for,omitempty"`
	// Body is the event's JSON body, only with Config.AttemptBodies; nil
	// otherwise. It comes from the IM server's users: escape it before
	// showing it.
	Body json.RawMessage `json:"body,omitempty"`
	// TraceID is the trace the call or attempt was part of (its span's,
	// or the caller's trace context: see Config.TracerProvider), 32 hex
	// digits; empty when there was none.
	TraceID string `json:"trace_id,omitempty"`
}

// AttemptQuery selects records of the attempt log. The zero value selects
// every record kept.
type AttemptQuery struct {
	// ByApp keeps only the records of AppID (app 0 is an app like any
	// other); false means every app.
	ByApp bool
	AppID int
	// EventID keeps only the records of that webhook-id; "" means any. A
	// webhook-id names an event within its app (two apps' message keys
	// given with WithEventID may be the same): with ByApp it selects one
	// event's records, without it that webhook-id's records in every app
	// (each record says its AppID).
	EventID string
	// OrderKey keeps only the records of After events under that order
	// key (of any app, unless ByApp); "" means any.
	OrderKey string
	// Kind keeps only KindBefore or KindAfter records; "" means both.
	Kind string
	// Outcome keeps only records of that outcome; "" means any.
	Outcome Outcome
	// AfterSeq keeps only records newer than it: a page polls with the
	// Seq of the last record it has. 0 means from the oldest kept.
	AfterSeq uint64
	// Limit keeps only the newest Limit records of those selected. 0
	// means all of them (at most the log's size).
	Limit int
}

// Attempts returns the records of the attempt log that q selects, oldest
// first (newest last, in Seq order; an After's OutcomeQueued record may
// follow its first attempt's, which a worker can make before After
// returns: Time orders them). The log keeps the last
// Config.AttemptLog records; older ones are forgotten, so a poller that
// falls behind (or gets Limit records) may miss some: the Seq numbers
// show the gap. It returns nil when the log is off. It is safe to call at
// any time, also after Close, and takes no lock that Before or After
// hold for more than a record's copy.
func (d *Dispatcher) Attempts(q AttemptQuery) []Attempt {
	return d.attempts.query(d, q)
}

// query returns the records q selects, oldest first.
func (l *attemptLog) query(d *Dispatcher, q AttemptQuery) []Attempt {
	if l == nil {
		return nil
	}
	last := l.next.Load()
	size := uint64(len(l.slots))
	first := q.AfterSeq + 1
	if last >= size && first <= last-size {
		first = last - size + 1
	}
	limit := q.Limit
	if limit <= 0 || limit > maxAttemptQuery {
		limit = maxAttemptQuery
	}
	var out []Attempt
	// Walk from the newest down, so Limit keeps the newest; reverse at
	// the end.
	for seq := last; seq >= first && seq > 0 && len(out) < limit; seq-- {
		s := &l.slots[seq%size]
		s.mu.Lock()
		rec := s.rec
		s.mu.Unlock()
		if rec.seq != seq || !q.matches(d, &rec) {
			continue // overwritten meanwhile, or not yet written
		}
		out = append(out, rec.export(d))
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// matches reports whether q selects rec.
func (q *AttemptQuery) matches(d *Dispatcher, rec *record) bool {
	switch {
	case q.ByApp && rec.appID != q.AppID:
		return false
	case q.Kind != "" && q.Kind != kindName(rec.kind):
		return false
	case q.Outcome != "" && q.Outcome != rec.outcome:
		return false
	case q.EventID != "" && q.EventID != rec.eventID(d):
		return false
	case q.OrderKey != "" && q.OrderKey != rec.key:
		return false
	}
	return true
}

func kindName(k uint8) string {
	if k == 0 {
		return KindBefore
	}
	return KindAfter
}

// eventID returns the webhook-id of rec.
func (rec *record) eventID(d *Dispatcher) string {
	return eventRef{rec.id, rec.idSeq}.name(d)
}

// name returns the webhook-id of the event r names; "" for none.
func (r eventRef) name(d *Dispatcher) string {
	if r.id != "" || r.seq == 0 {
		return r.id
	}
	return d.eventID(r.seq)
}

// export returns rec as an Attempt.
func (rec *record) export(d *Dispatcher) Attempt {
	a := Attempt{
		Seq: rec.seq, Time: rec.at, Kind: kindName(rec.kind),
		AppID: rec.appID, Command: rec.command, EventID: rec.eventID(d),
		Attempt: rec.attempt, Outcome: rec.outcome, Status: rec.status,
		Latency: rec.latency, Endpoint: rec.endpoint,
		OrderKey: rec.key, WaitsFor: rec.ahead.name(d),
	}
	if rec.err != nil {
		a.Error = rec.err.Error()
	}
	if rec.trace.IsValid() {
		a.TraceID = rec.trace.String()
	}
	if rec.body != nil {
		a.Body = json.RawMessage(append([]byte(nil), rec.body...))
	}
	return a
}

package callback

import (
	"encoding/json"
	"strings"
	"time"
)

// DeadLetter is an After event kept by a durable Queue's dead-letter store
// (natsqueue's dead-letter stream) after its delivery was given up, as
// listed for inspection and replay.
type DeadLetter struct {
	// Seq is its position in the store; a listing continues with AfterSeq
	// set to the last Seq it got.
	Seq uint64 `json:"seq"`
	// ID is the event's webhook-id: with AppID, what ReplayOne takes (two
	// apps' events may have the same webhook-id).
	ID       string    `json:"id"`
	AppID    int       `json:"app_id"`
	Command  string    `json:"command"`
	Error    string    `json:"error"`    // why its delivery was given up, as logged
	Time     time.Time `json:"time"`     // when it was dead-lettered
	Queued   time.Time `json:"queued"`   // when After accepted it; zero if unknown
	Attempts int       `json:"attempts"` // requests made
	// Body is the event's JSON body, only when DeadLetterQuery.Bodies
	// asked for it. It comes from the IM server's users: escape it before
	// showing it.
	Body json.RawMessage `json:"body,omitempty"`
}

// DeadLetterQuery selects dead letters. The zero value lists the oldest
// ones, every app, without bodies.
type DeadLetterQuery struct {
	// ByApp keeps only AppID's dead letters; false means every app.
	ByApp bool
	AppID int
	// EventID keeps only the dead letters of that webhook-id; "" means
	// any. With ByApp it selects one event's, without it that webhook-id's
	// in every app.
	EventID string
	// AfterSeq lists those after it, oldest first: 0 means from the first.
	AfterSeq uint64
	// Limit bounds how many are returned. 0 means 100; at most 1000.
	Limit int
	// Bodies includes each event's body.
	Bodies bool
}

// Bounds of DeadLetterQuery.Limit.
const (
	defaultDeadLetterLimit = 100
	maxDeadLetterLimit     = 1000
)

// Size is how many dead letters q lists at most: its Limit, 100 for 0 (or
// less), and never more than 1000. A dead-letter store reads the page size
// from it.
func (q DeadLetterQuery) Size() int {
	switch {
	case q.Limit <= 0:
		return defaultDeadLetterLimit
	case q.Limit > maxDeadLetterLimit:
		return maxDeadLetterLimit
	}
	return q.Limit
}

// DeadLetterFunc receives an After event that was not delivered and the
// error that ended its delivery (errors.Is works with ErrStatus, ErrClosed,
// context.DeadlineExceeded and so on). The Dispatcher never touches ev.Body
// again, so the function may keep it. A panic in it is recovered and logged
// at Error level with its stack, so one bad hook cannot crash the IM server.
type DeadLetterFunc func(ev Event, err error)

// ReplayQuery selects an app's dead letters to replay in bulk (natsqueue's
// Queue.ReplayMatching), at a set rate.
type ReplayQuery struct {
	// AppID is the app whose dead letters are replayed. Required.
	AppID int
	// Command keeps only that command's; "" means any.
	Command string
	// Since and Until keep those dead-lettered at or after Since and
	// before Until; a zero time means no bound.
	Since, Until time.Time
	// ErrorContains keeps those whose error (DeadLetter.Error) contains
	// it, for example "endpoint disabled" or "status: 503"; "" means any.
	ErrorContains string
	// Rate is how many are replayed per second at most. 0 means 50.
	Rate float64
	// Limit bounds how many are replayed (or counted); 0 means all.
	Limit int
	// DryRun counts what would be replayed and replays nothing.
	DryRun bool
}

// Matches reports whether dl is one that q selects (its app included).
func (q ReplayQuery) Matches(dl DeadLetter) bool {
	return dl.AppID == q.AppID &&
		(q.Command == "" || dl.Command == q.Command) &&
		(q.Since.IsZero() || !dl.Time.Before(q.Since)) &&
		(q.Until.IsZero() || dl.Time.Before(q.Until)) &&
		(q.ErrorContains == "" || strings.Contains(dl.Error, q.ErrorContains))
}

// ReplayResult is what a bulk replay did.
type ReplayResult struct {
	Matched  int `json:"matched"`  // dead letters the query selected (within Limit)
	Replayed int `json:"replayed"` // of them, moved back to the queue; 0 for a dry run
}

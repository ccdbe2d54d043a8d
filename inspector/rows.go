package inspector

import (
	"strconv"
	"strings"

	"github.com/imcallback/callback"
)

// row is a record of the attempt log as the page shows it.
type row struct {
	callback.Attempt
	// Replay is which replay of a dead-lettered After event the record
	// belongs to: 0 for the event's first life (see replays).
	Replay int
	Label  string // what the record is: "attempt 2", "accepted", ...
	Plain  string // Explain's words for its error
	// TraceLink is the trace's page (Options.TraceURL with the
	// record's TraceID); "" without a TraceURL or a trace id.
	TraceLink string
}

// rowsOf returns the page's rows of recs, which are in time order.
func rowsOf(recs []callback.Attempt, traceURL string) []row {
	marks := replays(recs)
	out := make([]row, len(recs))
	for i, a := range recs {
		out[i] = row{Attempt: a, Replay: marks[i], Label: label(a), Plain: Explain(a)}
		if traceURL != "" && a.TraceID != "" {
			// The id is 32 hex digits: nothing in it needs escaping.
			out[i].TraceLink = strings.ReplaceAll(traceURL, "{trace_id}", a.TraceID)
		}
	}
	return out
}

// label says what a record is, so that no number stands bare: an
// acceptance or a refusal is not an attempt, nor is a postponement,
// which has the number of the attempt it waits for.
func label(a callback.Attempt) string {
	switch {
	case a.Kind == callback.KindBefore:
		return "call"
	case a.Outcome == callback.OutcomeQueued:
		return "accepted"
	case a.Outcome == callback.OutcomeRejected:
		return "refused by After"
	case a.Outcome == callback.OutcomePostponed:
		return "held before attempt " + strconv.Itoa(a.Attempt)
	}
	return "attempt " + strconv.Itoa(a.Attempt)
}

// replays numbers the replays of recs, in time order: a record of an
// After event that follows the event's dead letter belongs to a replay
// (a dead-lettered event gets no more records unless it is replayed, and
// a replay starts again at attempt 1, without an acceptance: After was not
// called again). An acceptance recorded just after a first attempt that
// was dead-lettered at once is not a replay.
func replays(recs []callback.Attempt) []int {
	type state struct {
		dead bool
		n    int
	}
	events := map[string]*state{}
	out := make([]int, len(recs))
	for i, a := range recs {
		if a.Kind != callback.KindAfter {
			continue
		}
		st := events[a.EventID]
		if st == nil {
			st = &state{}
			events[a.EventID] = st
		}
		if a.Outcome != callback.OutcomeQueued {
			if st.dead {
				st.n++
			}
			st.dead = a.Outcome == callback.OutcomeDeadLettered
		}
		out[i] = st.n
	}
	return out
}

// replayCount returns how many times the event of recs, in time order,
// was replayed.
func replayCount(recs []callback.Attempt) int {
	marks := replays(recs)
	if len(marks) == 0 {
		return 0
	}
	return marks[len(marks)-1]
}

// replayed says how often an event was replayed, after its summary,
// which is of its newest state.
func replayed(n int) string {
	if n == 1 {
		return " It was replayed once from the dead letters."
	}
	return " It was replayed " + strconv.Itoa(n) + " times from the dead letters."
}

// colour is the class of an outcome's badge: each colour means one thing.
func colour(o callback.Outcome) string {
	switch o {
	case callback.OutcomeAllowed, callback.OutcomeDelivered:
		return "ok" // done as the App wanted
	case callback.OutcomeQueued, callback.OutcomeRetrying, callback.OutcomePostponed:
		return "wait" // waiting: it will be tried
	case callback.OutcomeDropped:
		return "drop"
	case callback.OutcomeFailedOpen:
		return "open" // failed, let through
	}
	return "bad" // refused or given up: denied, failed-closed, dead-lettered, rejected
}

// meaning says what an outcome means, for the page's legend.
var meaning = map[callback.Outcome]string{
	callback.OutcomeAllowed:      "the App backend allowed the event",
	callback.OutcomeDenied:       "the App backend denied it",
	callback.OutcomeDropped:      "the App backend dropped it silently",
	callback.OutcomeFailedOpen:   "the call failed; the event was let through",
	callback.OutcomeFailedClosed: "the call failed; the command fails closed, so the event was denied",
	callback.OutcomeQueued:       "After accepted the event; not sent yet",
	callback.OutcomeRetrying:     "an attempt failed; it will be tried again",
	callback.OutcomePostponed:    "held back unsent (breaker open, limit reached); not an attempt",
	callback.OutcomeDelivered:    "the App backend took it (2xx)",
	callback.OutcomeDeadLettered: "given up after its last attempt; with a store, kept for replay",
	callback.OutcomeRejected:     "After refused the event; never sent",
}

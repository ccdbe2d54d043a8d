package inspector

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/imcallback/callback"
)

// BulkReplayer is a DeadLetterStore that also replays by query;
// *natsqueue.Queue is one. The inspector finds it by type assertion on
// Options.DeadLetters.
type BulkReplayer interface {
	// ReplayMatching replays (or, with DryRun, counts) the dead letters q
	// selects, at q.Rate per second.
	ReplayMatching(ctx context.Context, q callback.ReplayQuery) (callback.ReplayResult, error)
}

// replayMatching answers POST api/replay-matching: the form's app
// (required), command, since, until (as the searches take them), error
// (text the dead letter's error contains), rate (per second, 0 means 50),
// limit and dry_run=1. It is authorised as a single replay is, and a
// scoped request may replay only its apps'. It runs within the request:
// a slow rate over many dead letters needs a client that waits (the
// handler's Timeout does not bound it); what was done before the client
// left is kept.
func (h *handler) replayMatching(w http.ResponseWriter, r *http.Request) {
	if !h.canReplay() {
		writeJSON(w, http.StatusForbidden, errorResponse{"replay is refused: set inspector.Options.Authorize or Scope"})
		return
	}
	br, ok := h.o.DeadLetters.(BulkReplayer)
	if !ok {
		writeJSON(w, http.StatusNotFound, errorResponse{"no dead-letter store that replays by query"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		badRequest(w, "form does not parse")
		return
	}
	f := r.Form
	app, err := strconv.Atoi(f.Get("app"))
	if err != nil {
		badRequest(w, "app is required, a number")
		return
	}
	q := callback.ReplayQuery{AppID: app, Command: f.Get("command"), ErrorContains: f.Get("error"), DryRun: f.Get("dry_run") == "1"}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if v := f.Get(p.name); v != "" {
			if *p.t, err = parseTime(v); err != nil {
				badRequest(w, p.name+" is not a time")
				return
			}
		}
	}
	if v := f.Get("rate"); v != "" {
		if q.Rate, err = strconv.ParseFloat(v, 64); err != nil || q.Rate < 0 {
			badRequest(w, "rate is not a positive number")
			return
		}
	}
	if v := f.Get("limit"); v != "" {
		if q.Limit, err = strconv.Atoi(v); err != nil || q.Limit < 0 {
			badRequest(w, "limit is not a positive number")
			return
		}
	}
	if !scopeOf(r).has(app) {
		writeJSON(w, http.StatusNotFound, errNoDeadLetter)
		return
	}
	res, err := br.ReplayMatching(r.Context(), q)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, bulkReplayResponse{res, err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, bulkReplayResponse{ReplayResult: res})
}

// bulkReplayResponse is the JSON answer of api/replay-matching: what was
// done, and why it stopped early if it did.
type bulkReplayResponse struct {
	callback.ReplayResult
	Error string `json:"error,omitempty"`
}

// Package inspector serves a Dispatcher's attempt log, endpoints and dead
// letters over HTTP, to answer "where did my callback go?": a JSON API
// and an HTML page on one http.Handler, which an IM server mounts on its
// admin port as it would net/http/pprof:
//
//	mux.Handle("/debug/callbacks/", http.StripPrefix("/debug/callbacks",
//		inspector.New(d, inspector.Options{Authorize: isAdmin})))
//
// The handler exposes everything it shows (apps, commands, webhook-ids,
// errors, bodies with Config.AttemptBodies) to whoever reaches it: it
// must sit behind the host's own authentication, on an admin listener.
// Options.Authorize, if set, is asked for every request and refuses with
// 403 what it does not allow. Replay changes state: it is a POST only,
// refused with 403 unless Authorize is set and allows the request, and
// refused when it comes cross-origin from a browser
// (http.CrossOriginProtection).
//
// The JSON API, relative to where the handler is mounted:
//
//	GET  api/attempts      recent records: ?app=&id=&kind=&outcome=&command=&since=&until=&after=&limit=
//	GET  api/event?id=     one webhook-id's story: its records and its dead letter
//	GET  api/endpoints     endpoints with breaker state, queue depth, calls in flight
//	GET  api/deadletters   dead letters (with Options.DeadLetters): ?app=&id=&after=&limit=&bodies=1
//	POST api/replay        replay one dead letter: form or query id=
//
// since and until are RFC 3339 times, or local ones as 2006-01-02T15:04;
// a parameter that is not a filter, or an outcome that is none, is an
// error 400, never ignored.
//
// The page (GET of the handler's root, ?id= or ?app= to look one up,
// the same filters as api/attempts, and ?dead_after= for the next page
// of dead letters) is
// rendered on the server with html/template: no script, no build step,
// nothing from a CDN, usable on a 390 px wide phone. Everything it shows
// that came from a peer (commands, errors, bodies, IDs) is escaped.
package inspector

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/imcallback/callback"
)

// DeadLetterStore lists and replays the dead letters of a durable Queue;
// *natsqueue.Queue is one.
type DeadLetterStore interface {
	// ListDeadLetters returns the dead letters q selects, oldest first.
	ListDeadLetters(ctx context.Context, q callback.DeadLetterQuery) ([]callback.DeadLetter, error)
	// ReplayOne puts the dead letter of the webhook-id id back in the
	// queue, or returns an error wrapping callback.ErrNotFound.
	ReplayOne(ctx context.Context, id string) error
}

// Options configures the handler. The zero value serves everything to
// whoever reaches it and refuses replays.
type Options struct {
	// Authorize, if set, is asked for every request: false answers 403.
	// It also enables replay, which is refused (403) while it is nil.
	Authorize func(*http.Request) bool

	// DeadLetters, if set, lists dead letters and replays them. nil means
	// no dead-letter section (the memory queue keeps none: see
	// callback.Config.DeadLetter).
	DeadLetters DeadLetterStore

	// Timeout bounds each request to DeadLetters. 0 means 5 s.
	Timeout time.Duration

	// BackURL, if set, is a link at the top of the page back to the host's
	// own page (the chat example's chat), with BackLabel as its text ("" means
	// "Back"). "" means no link.
	BackURL, BackLabel string
}

const (
	defaultTimeout  = 5 * time.Second
	pageAttempts    = 100 // records on the page's recent list
	pageDeadLetters = 100 // dead letters on one page of the page's list
	maxBody         = 1 << 12
)

type handler struct {
	d    *callback.Dispatcher
	o    Options
	mux  *http.ServeMux
	csrf *http.CrossOriginProtection
}

// New returns the inspector of d. See the package doc for what it serves
// and how to protect it.
func New(d *callback.Dispatcher, o Options) http.Handler {
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	h := &handler{d: d, o: o, mux: http.NewServeMux(), csrf: http.NewCrossOriginProtection()}
	h.mux.HandleFunc("GET /{$}", h.page)
	h.mux.HandleFunc("GET /api/attempts", h.attempts)
	h.mux.HandleFunc("GET /api/event", h.event)
	h.mux.HandleFunc("GET /api/endpoints", h.endpoints)
	h.mux.HandleFunc("GET /api/deadletters", h.deadLetters)
	h.mux.Handle("POST /api/replay", h.csrf.Handler(http.HandlerFunc(h.replay)))
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.o.Authorize != nil && !h.o.Authorize(r) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// AttemptsResponse is the JSON answer of api/attempts.
type AttemptsResponse struct {
	Attempts []callback.Attempt `json:"attempts"`
	// LastSeq is the Seq to poll after: the last record's, or the
	// request's after when none is newer.
	LastSeq uint64 `json:"last_seq"`
}

// EventResponse is the JSON answer of api/event: the story of one
// webhook-id.
type EventResponse struct {
	ID       string             `json:"id"`
	Attempts []callback.Attempt `json:"attempts"` // in time order
	// DeadLetter is the event's dead letter in Options.DeadLetters; null
	// when there is none or no store.
	DeadLetter *callback.DeadLetter `json:"dead_letter"`
	// Summary says in a sentence what became of the event.
	Summary string `json:"summary"`
	// Replays is how many times the event was replayed from the dead
	// letters: the records after each dead letter are a replay's, which
	// starts again at attempt 1.
	Replays int `json:"replays"`
	// Error is set when the dead-letter store could not be read.
	Error string `json:"error,omitempty"`
}

// EndpointsResponse is the JSON answer of api/endpoints: d.Stats()'s
// gauges.
type EndpointsResponse struct {
	Endpoints    []Endpoint      `json:"endpoints"`
	QueueDepth   int             `json:"queue_depth"`
	OldestQueued time.Duration   `json:"oldest_queued_ns"`
	ActiveBefore int             `json:"active_before"`
	ActiveAfter  int             `json:"active_after"`
	Total        callback.Counts `json:"total"`
}

// Endpoint is one endpoint's state.
type Endpoint struct {
	URL     string `json:"url"`     // as in Stats.Breakers
	Breaker string `json:"breaker"` // "closed", "half-open" or "open"
}

// DeadLettersResponse is the JSON answer of api/deadletters.
type DeadLettersResponse struct {
	DeadLetters []callback.DeadLetter `json:"dead_letters"`
	// LastSeq is the after of the next page; 0 when none.
	LastSeq uint64 `json:"last_seq"`
}

// ReplayResponse is the JSON answer of a replay that succeeded.
type ReplayResponse struct {
	Replayed string `json:"replayed"` // the webhook-id
}

// errorResponse is the JSON answer of a failed API request.
type errorResponse struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, errorResponse{msg})
}

// attemptQuery reads an AttemptQuery from v.
func attemptQuery(v url.Values) (callback.AttemptQuery, error) {
	var q callback.AttemptQuery
	var err error
	if s := v.Get("app"); s != "" {
		if q.AppID, err = strconv.Atoi(s); err != nil {
			return q, errors.New("app is not a number")
		}
		q.ByApp = true
	}
	q.EventID = v.Get("id")
	q.Kind = v.Get("kind")
	if q.Kind != "" && q.Kind != callback.KindBefore && q.Kind != callback.KindAfter {
		return q, errors.New("kind is not before or after")
	}
	q.Outcome = callback.Outcome(v.Get("outcome"))
	if s := v.Get("after"); s != "" {
		if q.AfterSeq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return q, errors.New("after is not a number")
		}
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
			return q, errors.New("limit is not a number")
		}
	}
	return q, nil
}

func (h *handler) attempts(w http.ResponseWriter, r *http.Request) {
	s, err := parseSearch(r.URL.Query(), attemptFilters)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	res := AttemptsResponse{Attempts: s.run(h.d), LastSeq: s.q.AfterSeq}
	if n := len(res.Attempts); n > 0 {
		res.LastSeq = res.Attempts[n-1].Seq
	}
	if res.Attempts == nil {
		res.Attempts = []callback.Attempt{}
	}
	writeJSON(w, http.StatusOK, res)
}

// story returns the story of the webhook-id id.
func (h *handler) story(ctx context.Context, id string) EventResponse {
	res := EventResponse{ID: id, Attempts: h.d.Attempts(callback.AttemptQuery{EventID: id})}
	// The record of an After's acceptance may be numbered after its first
	// attempt's: time orders them.
	slices.SortStableFunc(res.Attempts, func(a, b callback.Attempt) int { return a.Time.Compare(b.Time) })
	if h.o.DeadLetters != nil {
		ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
		defer cancel()
		dls, err := h.o.DeadLetters.ListDeadLetters(ctx, callback.DeadLetterQuery{EventID: id, Limit: 1})
		if err != nil {
			res.Error = "dead letters: " + err.Error()
		} else if len(dls) > 0 {
			res.DeadLetter = &dls[0]
		}
	}
	res.Summary = summary(&res)
	if res.Replays = replayCount(res.Attempts); res.Replays > 0 {
		res.Summary += replayed(res.Replays)
	}
	if res.Attempts == nil {
		res.Attempts = []callback.Attempt{}
	}
	return res
}

// summary says what became of an event.
func summary(e *EventResponse) string {
	if len(e.Attempts) == 0 {
		if e.DeadLetter != nil {
			return "Dead-lettered after " + countAttempts(e.DeadLetter.Attempts) + ": " + e.DeadLetter.Error + ". Its attempts are older than the attempt log keeps."
		}
		return "Never sent by this process: no record of this webhook-id. It was never given to Before or After here (a disabled command, or another node), or it is older than the attempt log keeps."
	}
	last := e.Attempts[len(e.Attempts)-1]
	sent := 0
	for _, a := range e.Attempts {
		if a.Attempt > 0 && a.Outcome != callback.OutcomePostponed {
			sent++
		}
	}
	switch last.Outcome {
	case callback.OutcomeAllowed, callback.OutcomeDenied, callback.OutcomeDropped:
		return "Before: the App backend answered " + strconv.Itoa(last.Status) + " and the event was " + string(last.Outcome) + "."
	case callback.OutcomeFailedOpen:
		return "Before failed and the event was allowed (fails open): " + last.Error + "."
	case callback.OutcomeFailedClosed:
		return "Before failed and the event was denied (fails closed): " + last.Error + "."
	case callback.OutcomeDelivered:
		return "Delivered: answered " + strconv.Itoa(last.Status) + " at attempt " + strconv.Itoa(last.Attempt) + " (" + countAttempts(sent) + " in all)."
	case callback.OutcomeRetrying:
		return "Not delivered yet: attempt " + strconv.Itoa(last.Attempt) + " failed (" + last.Error + "); it will be retried."
	case callback.OutcomeDeadLettered:
		return "Dead-lettered after " + countAttempts(sent) + ": " + last.Error + "."
	case callback.OutcomePostponed:
		return "Waiting: its endpoint could not take it (breaker open or limit reached); it will be tried again."
	case callback.OutcomeQueued:
		return "Queued, never sent yet: waiting for a worker, a retry's time or its endpoint's breaker."
	case callback.OutcomeRejected:
		return "Never sent: After refused it (" + last.Error + ")."
	}
	return string(last.Outcome)
}

// countAttempts says "1 attempt" or "n attempts".
func countAttempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return strconv.Itoa(n) + " attempts"
}

func (h *handler) event(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		badRequest(w, "id is required")
		return
	}
	writeJSON(w, http.StatusOK, h.story(r.Context(), id))
}

// endpointsOf returns d's endpoints and gauges.
func endpointsOf(d *callback.Dispatcher) EndpointsResponse {
	s := d.Stats()
	res := EndpointsResponse{Endpoints: []Endpoint{}, QueueDepth: s.QueueDepth, OldestQueued: s.OldestQueued,
		ActiveBefore: s.ActiveBefore, ActiveAfter: s.ActiveAfter, Total: s.Total}
	for u, st := range s.Breakers {
		res.Endpoints = append(res.Endpoints, Endpoint{URL: u, Breaker: st})
	}
	slices.SortFunc(res.Endpoints, func(a, b Endpoint) int {
		switch {
		case a.URL < b.URL:
			return -1
		case a.URL > b.URL:
			return 1
		}
		return 0
	})
	return res
}

func (h *handler) endpoints(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, endpointsOf(h.d))
}

// deadLetterQuery reads a DeadLetterQuery from v.
func deadLetterQuery(v url.Values) (callback.DeadLetterQuery, error) {
	aq, err := attemptQuery(url.Values{"app": v["app"], "after": v["after"], "limit": v["limit"]})
	q := callback.DeadLetterQuery{ByApp: aq.ByApp, AppID: aq.AppID, EventID: v.Get("id"),
		AfterSeq: aq.AfterSeq, Limit: aq.Limit, Bodies: v.Get("bodies") == "1"}
	return q, err
}

func (h *handler) deadLetters(w http.ResponseWriter, r *http.Request) {
	if h.o.DeadLetters == nil {
		writeJSON(w, http.StatusNotFound, errorResponse{"no dead-letter store: Options.DeadLetters is nil"})
		return
	}
	q, err := deadLetterQuery(r.URL.Query())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	dls, err := h.o.DeadLetters.ListDeadLetters(ctx, q)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, errorResponse{err.Error()})
		return
	}
	res := DeadLettersResponse{DeadLetters: dls}
	if res.DeadLetters == nil {
		res.DeadLetters = []callback.DeadLetter{}
	}
	if n := len(dls); n > 0 {
		res.LastSeq = dls[n-1].Seq
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) replay(w http.ResponseWriter, r *http.Request) {
	if h.o.Authorize == nil {
		writeJSON(w, http.StatusForbidden, errorResponse{"replay is refused: set inspector.Options.Authorize"})
		return
	}
	if h.o.DeadLetters == nil {
		writeJSON(w, http.StatusNotFound, errorResponse{"no dead-letter store: Options.DeadLetters is nil"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	id := r.FormValue("id")
	if id == "" {
		badRequest(w, "id is required")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	err := h.o.DeadLetters.ReplayOne(ctx, id)
	switch {
	case errors.Is(err, callback.ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorResponse{"no dead letter of that webhook-id"})
		return
	case err != nil:
		writeJSON(w, http.StatusBadGateway, errorResponse{err.Error()})
		return
	}
	if r.PostFormValue("back") != "" { // the page's form: back to the event
		// Relative to the request, so it works wherever the handler is
		// mounted (http.Redirect would resolve it against the stripped path).
		w.Header().Set("Location", "../?id="+url.QueryEscape(id))
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, ReplayResponse{Replayed: id})
}

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}

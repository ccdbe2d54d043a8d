// Package inspector serves a Dispatcher's attempt log, endpoints and dead
// letters over HTTP, to answer "where did my callback go?": a JSON API
// and an HTML page on one http.Handler, which an IM server mounts on its
// admin port as it would net/http/pprof:
//
//	mux.Handle("/debug/callbacks/", http.StripPrefix("/debug/callbacks",
//		inspector.New(d, inspector.Options{Authorize: isAdmin})))
//
// The handler exposes what it shows (apps, commands, webhook-ids, errors,
// endpoint URLs without credentials or query, bodies with
// Config.AttemptBodies) to whoever reaches it: it must sit behind the
// host's own authentication. Options.Authorize, if set, is asked for every
// request and refuses with 403 what it does not allow. Replay changes
// state: it is a POST only, refused with 403 unless Authorize or Scope is
// set and allows the request, and refused when it comes cross-origin from
// a browser (http.CrossOriginProtection).
//
// # Two deployments
//
// Admin only: Authorize (or nothing, on an admin listener) and no Scope.
// Every request sees every app: all records, every endpoint with its
// breaker, the Dispatcher-wide gauges (queue depth, calls in flight,
// counts), every dead letter, and it may replay any of them.
//
// Per tenant: Options.Scope names the apps a request may see, from the
// request's own credentials (never from its query):
//
//	inspector.New(d, inspector.Options{DeadLetters: q,
//		Scope: func(r *http.Request) (inspector.Scope, bool) {
//			app, ok := tenantApp(r) // the host's authentication
//			return inspector.Scope{Apps: []int{app}}, ok
//		}})
//
// Such a request sees its apps' records (and bodies, with
// Config.AttemptBodies), their dead letters, and their own endpoints'
// URLs and breakers, and replays only their dead letters. Another app's
// webhook-id answers exactly as an unknown one does (an empty story, an
// empty list, 404 for a replay), even when the same webhook-id exists
// there; an app it may not see lists nothing; the Dispatcher-wide gauges
// are zero. What it still learns of the others: the Seq numbers of
// records and dead letters number every app's together, so the gap
// between two of its own tells how many records (or dead letters) the
// other apps made in between; and an endpoint shared with other apps (a
// Config.URL without a Resolver) shows a breaker their failures open too.
//
// The JSON API, relative to where the handler is mounted:
//
//	GET  api/attempts      recent records: ?app=&id=&kind=&outcome=&command=&since=&until=&after=&limit=
//	GET  api/event?id=     one event's story: ?app= and id= (its webhook-id)
//	GET  api/endpoints     endpoints with breaker state, health, queue depth, calls in flight
//	GET  api/deadletters   dead letters (with Options.DeadLetters): ?app=&id=&after=&limit=&bodies=1
//	POST api/replay        replay one dead letter: form or query app= and id=
//	POST api/enable        enable a disabled endpoint: form url= (as api/endpoints names it)
//	POST api/replay-matching  replay an app's dead letters by query: form app= (required),
//	                       command=, since=, until=, error=, rate=, limit=, dry_run=1
//
// An event is named by its app and its webhook-id: two apps' events may
// have the same webhook-id. api/event and api/replay without app= take the
// one app in the request's scope with an event of that id, and answer 400
// when there are several.
//
// since and until are RFC 3339 times, or local ones as 2006-01-02T15:04;
// a parameter that is not a filter, or an outcome that is none, is an
// error 400, never ignored.
//
// The page (GET of the handler's root, ?id= and ?app= to look one up,
// the same filters as api/attempts, and ?dead_after= for the next page
// of dead letters) is
// rendered on the server with html/template: no script, no build step,
// nothing from a CDN, usable on a 390 px wide phone. Everything it shows
// that came from a peer (commands, errors, bodies, IDs) is escaped.
package inspector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback"
)

// DeadLetterStore lists and replays the dead letters of a durable Queue;
// *natsqueue.Queue is one.
type DeadLetterStore interface {
	// ListDeadLetters returns the dead letters q selects, oldest first.
	ListDeadLetters(ctx context.Context, q callback.DeadLetterQuery) ([]callback.DeadLetter, error)
	// ReplayOne puts the dead letter of app appID's event id (its
	// webhook-id) back in the queue, or returns an error wrapping
	// callback.ErrNotFound.
	ReplayOne(ctx context.Context, appID int, id string) error
}

// Scope is what one request may see: every app, or the apps listed. The
// zero Scope sees no app.
type Scope struct {
	// All sees every app and the Dispatcher-wide gauges; Apps is then
	// ignored.
	All bool
	// Apps are the apps the request sees when All is false.
	Apps []int
}

// has reports whether s sees app.
func (s *Scope) has(app int) bool { return s.All || slices.Contains(s.Apps, app) }

// apps returns the apps of s, each once, in order.
func (s *Scope) apps() []int {
	a := slices.Clone(s.Apps)
	slices.Sort(a)
	return slices.Compact(a)
}

// Options configures the handler. The zero value serves everything to
// whoever reaches it and refuses replays.
type Options struct {
	// Authorize, if set, is asked for every request: false answers 403.
	// It also enables replay, which is refused (403) while both it and
	// Scope are nil. Without Scope, a request it allows sees every app.
	Authorize func(*http.Request) bool

	// Scope, if set, is asked for every request (after Authorize, if
	// that is set too) for the apps it may see: false answers 403, and
	// every endpoint then answers only within the Scope returned (see
	// the package doc). It also enables replay. nil means every request
	// sees every app (Scope{All: true}).
	Scope func(*http.Request) (Scope, bool)

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

	// TraceURL, if set, links each record's trace id (callback.Attempt's
	// TraceID, recorded when the Dispatcher traces: see
	// callback.Config.TracerProvider) to the trace's page in the
	// tracing UI: "{trace_id}" in it is replaced by the id, for example
	// "http://jaeger:16686/trace/{trace_id}" for Jaeger, or Grafana's
	// trace view of a Tempo data source. "" shows the id without a link.
	TraceURL string
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

// scopeKey marks a request's context that carries its Scope.
type scopeKey struct{}

// scopeOf returns the Scope ServeHTTP gave r.
func scopeOf(r *http.Request) *Scope {
	if s, ok := r.Context().Value(scopeKey{}).(*Scope); ok {
		return s
	}
	return &Scope{} // not reached: ServeHTTP sets one
}

// canReplay reports whether replays are enabled.
func (h *handler) canReplay() bool { return h.o.Authorize != nil || h.o.Scope != nil }

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
	h.mux.Handle("POST /api/enable", h.csrf.Handler(http.HandlerFunc(h.enable)))
	h.mux.Handle("POST /api/replay-matching", h.csrf.Handler(http.HandlerFunc(h.replayMatching)))
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.o.Authorize != nil && !h.o.Authorize(r) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	scope := Scope{All: true}
	if h.o.Scope != nil {
		s, ok := h.o.Scope(r)
		if !ok {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		scope = Scope{All: s.All, Apps: s.apps()} // a copy: the hook may reuse its slice
	}
	r = r.WithContext(context.WithValue(r.Context(), scopeKey{}, &scope))
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
// event, named by its app and its webhook-id.
type EventResponse struct {
	ID string `json:"id"`
	// AppID is the event's app: the request's app=, or else the one app
	// in the request's scope with an event of that webhook-id; null when
	// there is none.
	AppID    *int               `json:"app_id"`
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
// gauges. A request whose Scope is not All gets its apps' endpoints only,
// and zero for the gauges, which count every app's traffic.
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
	// Health is "ok", "failing" or "disabled" (see callback.HealthPolicy;
	// also for an app its Resolver disables, callback.Endpoint.Disabled).
	Health string `json:"health"`
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
	AppID    int    `json:"app_id"`
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
	res := AttemptsResponse{Attempts: s.run(h.attemptsWithin(scopeOf(r))), LastSeq: s.q.AfterSeq}
	if n := len(res.Attempts); n > 0 {
		res.LastSeq = res.Attempts[n-1].Seq
	}
	if res.Attempts == nil {
		res.Attempts = []callback.Attempt{}
	}
	writeJSON(w, http.StatusOK, res)
}

// attemptsIn returns the records q selects within scope, oldest first: an
// app out of scope has none.
func (h *handler) attemptsIn(scope *Scope, q callback.AttemptQuery) []callback.Attempt {
	switch {
	case q.ByApp && !scope.has(q.AppID):
		return nil
	case q.ByApp || scope.All:
		return h.d.Attempts(q)
	}
	var out []callback.Attempt
	for _, app := range scope.Apps {
		qa := q
		qa.ByApp, qa.AppID = true, app
		out = append(out, h.d.Attempts(qa)...)
	}
	slices.SortFunc(out, func(a, b callback.Attempt) int { return cmpUint(a.Seq, b.Seq) })
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out
}

// attemptsWithin returns attemptsIn for one scope, for a search to run.
func (h *handler) attemptsWithin(scope *Scope) func(callback.AttemptQuery) []callback.Attempt {
	return func(q callback.AttemptQuery) []callback.Attempt { return h.attemptsIn(scope, q) }
}

// deadLettersIn returns the dead letters q selects within scope, oldest
// first: an app out of scope has none.
func (h *handler) deadLettersIn(ctx context.Context, scope *Scope, q callback.DeadLetterQuery) ([]callback.DeadLetter, error) {
	switch {
	case q.ByApp && !scope.has(q.AppID):
		return nil, nil
	case q.ByApp || scope.All:
		return h.o.DeadLetters.ListDeadLetters(ctx, q)
	}
	var out []callback.DeadLetter
	for _, app := range scope.Apps {
		qa := q
		qa.ByApp, qa.AppID = true, app
		dls, err := h.o.DeadLetters.ListDeadLetters(ctx, qa)
		if err != nil {
			return nil, err
		}
		out = append(out, dls...)
	}
	// Each app's page is the oldest after AfterSeq: together, the oldest
	// Size of them are the page.
	slices.SortFunc(out, func(a, b callback.DeadLetter) int { return cmpUint(a.Seq, b.Seq) })
	if n := q.Size(); len(out) > n {
		out = out[:n]
	}
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// errAmbiguous is the error of a webhook-id given without its app that
// apps in the request's scope share.
type errAmbiguous []int

func (e errAmbiguous) Error() string {
	apps := make([]string, len(e))
	for i, a := range e {
		apps[i] = strconv.Itoa(a)
	}
	return "webhook-id of events in apps " + strings.Join(apps, ", ") + ": give app"
}

// appOf returns the app of the event id that a request gave without its
// app: the one app in scope with records or a dead letter of id (ok false
// when none has), or an errAmbiguous.
func (h *handler) appOf(ctx context.Context, scope *Scope, id string) (app int, ok bool, err error) {
	if !scope.All && len(scope.Apps) == 1 {
		return scope.Apps[0], true, nil
	}
	var apps []int
	for _, a := range h.attemptsIn(scope, callback.AttemptQuery{EventID: id}) {
		apps = append(apps, a.AppID)
	}
	if h.o.DeadLetters != nil {
		ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
		defer cancel()
		dls, err := h.deadLettersIn(ctx, scope, callback.DeadLetterQuery{EventID: id})
		if err != nil {
			return 0, false, fmt.Errorf("dead letters: %w", err)
		}
		for _, dl := range dls {
			apps = append(apps, dl.AppID)
		}
	}
	slices.Sort(apps)
	apps = slices.Compact(apps)
	switch len(apps) {
	case 0:
		return 0, false, nil
	case 1:
		return apps[0], true, nil
	}
	return 0, false, errAmbiguous(apps)
}

// eventOf reads the event a request names (app= and id= of v) and returns
// its app; ok is false when no app in scope has an event of that id and
// none was given.
func (h *handler) eventOf(ctx context.Context, scope *Scope, v url.Values) (app int, ok bool, err error) {
	if s := v.Get("app"); s != "" {
		app, err := strconv.Atoi(s)
		if err != nil {
			return 0, false, errors.New("app is not a number")
		}
		return app, true, nil
	}
	return h.appOf(ctx, scope, v.Get("id"))
}

// story returns the story of app's event id (with known false, of no
// event), within scope: another app's event is told as an unknown one.
func (h *handler) story(ctx context.Context, scope *Scope, app int, known bool, id string) EventResponse {
	res := EventResponse{ID: id}
	if known {
		res.AppID = &app
	}
	if known && scope.has(app) {
		res.Attempts = h.d.Attempts(callback.AttemptQuery{ByApp: true, AppID: app, EventID: id})
		// The record of an After's acceptance may be numbered after its
		// first attempt's: time orders them.
		slices.SortStableFunc(res.Attempts, func(a, b callback.Attempt) int { return a.Time.Compare(b.Time) })
		if h.o.DeadLetters != nil {
			ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
			defer cancel()
			dls, err := h.o.DeadLetters.ListDeadLetters(ctx, callback.DeadLetterQuery{ByApp: true, AppID: app, EventID: id, Limit: 1})
			if err != nil {
				res.Error = "dead letters: " + err.Error()
			} else if len(dls) > 0 {
				res.DeadLetter = &dls[0]
			}
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
	v := r.URL.Query()
	id := v.Get("id")
	if id == "" {
		badRequest(w, "id is required")
		return
	}
	scope := scopeOf(r)
	app, known, err := h.eventOf(r.Context(), scope, v)
	var amb errAmbiguous
	switch {
	case errors.As(err, &amb):
		badRequest(w, err.Error())
		return
	case err != nil && v.Get("app") != "":
		badRequest(w, err.Error())
		return
	case err != nil:
		writeJSON(w, http.StatusBadGateway, errorResponse{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, h.story(r.Context(), scope, app, known, id))
}

// endpointsOf returns d's endpoints and gauges within scope.
func (h *handler) endpointsOf(ctx context.Context, scope *Scope) EndpointsResponse {
	s := h.d.Stats()
	res := EndpointsResponse{Endpoints: []Endpoint{}}
	if scope.All {
		res.QueueDepth, res.OldestQueued = s.QueueDepth, s.OldestQueued
		res.ActiveBefore, res.ActiveAfter, res.Total = s.ActiveBefore, s.ActiveAfter, s.Total
		for u, st := range s.Breakers {
			res.Endpoints = append(res.Endpoints, Endpoint{URL: u, Breaker: st, Health: healthOf(s, u, false)})
		}
		res.Endpoints = append(res.Endpoints, unbroken(s)...)
	} else {
		ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
		defer cancel()
		for _, app := range scope.Apps {
			ep, err := h.d.Endpoint(ctx, app)
			if err != nil {
				continue // an app that does not resolve has no endpoint
			}
			u := endpointName(ep.URL)
			st, ok := s.Breakers[u]
			if !ok {
				st = "closed" // not called yet, or breakers disabled
			}
			res.Endpoints = append(res.Endpoints, Endpoint{URL: u, Breaker: st, Health: healthOf(s, u, ep.Disabled)})
		}
	}
	slices.SortFunc(res.Endpoints, func(a, b Endpoint) int { return strings.Compare(a.URL, b.URL) })
	res.Endpoints = slices.CompactFunc(res.Endpoints, func(a, b Endpoint) bool { return a.URL == b.URL })
	return res
}

// endpointName names the callback URL raw as Stats.Breakers and
// Attempt.Endpoint do: without user information and query, and with a
// short hash of the query when it has one.
func endpointName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "" // not reached: the Dispatcher resolved it
	}
	s := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if u.RawQuery != "" {
		h := sha256.Sum256([]byte(u.RawQuery))
		s += "?#" + hex.EncodeToString(h[:4])
	}
	return s
}

func (h *handler) endpoints(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.endpointsOf(r.Context(), scopeOf(r)))
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
	dls, err := h.deadLettersIn(ctx, scopeOf(r), q)
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

// errNoDeadLetter is replay's answer for an event with no dead letter in
// the request's scope.
var errNoDeadLetter = errorResponse{"no dead letter of that event"}

func (h *handler) replay(w http.ResponseWriter, r *http.Request) {
	if !h.canReplay() {
		writeJSON(w, http.StatusForbidden, errorResponse{"replay is refused: set inspector.Options.Authorize or Scope"})
		return
	}
	if h.o.DeadLetters == nil {
		writeJSON(w, http.StatusNotFound, errorResponse{"no dead-letter store: Options.DeadLetters is nil"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		badRequest(w, "form does not parse")
		return
	}
	id := r.Form.Get("id")
	if id == "" {
		badRequest(w, "id is required")
		return
	}
	scope := scopeOf(r)
	app, known, err := h.eventOf(r.Context(), scope, r.Form)
	var amb errAmbiguous
	switch {
	case errors.As(err, &amb), err != nil && r.Form.Get("app") != "":
		badRequest(w, err.Error())
		return
	case err != nil:
		writeJSON(w, http.StatusBadGateway, errorResponse{err.Error()})
		return
	case !known || !scope.has(app):
		writeJSON(w, http.StatusNotFound, errNoDeadLetter) // as for an unknown id
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	err = h.o.DeadLetters.ReplayOne(ctx, app, id)
	switch {
	case errors.Is(err, callback.ErrNotFound):
		writeJSON(w, http.StatusNotFound, errNoDeadLetter)
		return
	case err != nil:
		writeJSON(w, http.StatusBadGateway, errorResponse{err.Error()})
		return
	}
	if r.PostFormValue("back") != "" { // the page's form: back to the event
		// Relative to the request, so it works wherever the handler is
		// mounted (http.Redirect would resolve it against the stripped path).
		w.Header().Set("Location", "../?"+url.Values{"id": {id}, "app": {strconv.Itoa(app)}}.Encode())
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, ReplayResponse{Replayed: id, AppID: app})
}

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}

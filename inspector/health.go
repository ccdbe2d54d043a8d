package inspector

import (
	"errors"
	"net/http"
	"slices"

	"github.com/imcallback/callback"
)

// healthOf returns the health of endpoint u in s: "disabled" also when
// its app's Resolver disables it (stored).
func healthOf(s callback.Stats, u string, stored bool) string {
	switch {
	case stored || slices.Contains(s.Disabled, u):
		return "disabled"
	case slices.Contains(s.Failing, u):
		return "failing"
	}
	return "ok"
}

// unbroken returns the endpoints that are disabled or failing but have no
// breaker state in s (Config.Breaker.Disabled), with their health.
func unbroken(s callback.Stats) []Endpoint {
	var eps []Endpoint
	for _, list := range [][]string{s.Disabled, s.Failing} {
		for _, u := range list {
			if _, ok := s.Breakers[u]; !ok {
				eps = append(eps, Endpoint{URL: u, Breaker: "closed", Health: healthOf(s, u, false)})
			}
		}
	}
	return eps
}

// EnableResponse is the JSON answer of an api/enable that succeeded.
type EnableResponse struct {
	Enabled string `json:"enabled"` // the endpoint's URL, as in Endpoint
}

// enable answers POST api/enable: url, an endpoint the Dispatcher
// disabled (see callback.Dispatcher.EnableEndpoint), authorised as a
// replay is; a scoped request may enable only its apps' endpoints. An app
// disabled in its store (sqlapps) is enabled there, not here.
func (h *handler) enable(w http.ResponseWriter, r *http.Request) {
	if !h.canReplay() {
		writeJSON(w, http.StatusForbidden, errorResponse{"enable is refused: set inspector.Options.Authorize or Scope"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		badRequest(w, "form does not parse")
		return
	}
	u := r.Form.Get("url")
	if u == "" {
		badRequest(w, "url is required")
		return
	}
	scope := scopeOf(r)
	if !scope.All {
		mine := false
		for _, ep := range h.endpointsOf(r.Context(), scope).Endpoints {
			mine = mine || ep.URL == u
		}
		if !mine {
			writeJSON(w, http.StatusNotFound, errorResponse{"no such endpoint"})
			return
		}
	}
	err := h.d.EnableEndpoint(u)
	switch {
	case errors.Is(err, callback.ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorResponse{"no such endpoint"})
		return
	case err != nil:
		writeJSON(w, http.StatusBadGateway, errorResponse{err.Error()})
		return
	}
	if r.PostFormValue("back") != "" { // the page's form: back to the page
		w.Header().Set("Location", "../")
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, EnableResponse{Enabled: u})
}

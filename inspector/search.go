package inspector

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/imcallback/callback"
)

// search is a search of the attempt log: what callback.AttemptQuery
// selects, and the filters it has not (command, time range), which the
// inspector applies itself.
type search struct {
	q            callback.AttemptQuery
	command      string
	since, until time.Time // zero: open
}

// attemptFilters are the parameters api/attempts takes; pageFilters the
// page's. Any other is an error: a filter silently ignored answers a
// question nobody asked.
var (
	attemptFilters = []string{"app", "id", "kind", "outcome", "command", "since", "until", "after", "limit"}
	pageFilters    = []string{"app", "id", "kind", "outcome", "command", "since", "until", "dead_after"}
)

// outcomes are the Outcomes a search may ask for, in the order the page
// lists them.
var outcomes = []callback.Outcome{
	callback.OutcomeAllowed, callback.OutcomeDenied, callback.OutcomeDropped, callback.OutcomeFailedOpen, callback.OutcomeFailedClosed,
	callback.OutcomeQueued, callback.OutcomeRetrying, callback.OutcomePostponed, callback.OutcomeDelivered,
	callback.OutcomeDeadLettered, callback.OutcomeRejected,
}

// timeLayouts are the forms since and until take: RFC 3339, or a local
// time as an HTML datetime-local input sends it.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04"}

// parseSearch reads a search from v, which may hold only the parameters
// in allowed.
func parseSearch(v url.Values, allowed []string) (search, error) {
	for k := range v {
		if !slices.Contains(allowed, k) {
			return search{}, errors.New("unknown filter " + quote(k) + ": use " + strings.Join(allowed, ", "))
		}
	}
	q, err := attemptQuery(v)
	if err != nil {
		return search{}, err
	}
	if q.Outcome != "" && !slices.Contains(outcomes, q.Outcome) {
		return search{}, errors.New("outcome is not one of " + outcomeList())
	}
	s := search{q: q, command: v.Get("command")}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"since", &s.since}, {"until", &s.until}} {
		if *f.t, err = parseTime(v.Get(f.name)); err != nil {
			return search{}, errors.New(f.name + " is not a time: use RFC 3339 (2006-01-02T15:04:05Z) or a local 2006-01-02T15:04")
		}
	}
	if !s.since.IsZero() && !s.until.IsZero() && s.until.Before(s.since) {
		return search{}, errors.New("until is before since")
	}
	return s, nil
}

// parseTime reads one of timeLayouts; "" is the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	var err error
	for _, layout := range timeLayouts {
		var t time.Time
		if t, err = time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}

// run returns the records s selects from those attempts gives (the
// attempt log, within the request's scope), oldest first, at most
// s.q.Limit of the newest (0: all).
func (s search) run(attempts func(callback.AttemptQuery) []callback.Attempt) []callback.Attempt {
	if s.command == "" && s.since.IsZero() && s.until.IsZero() {
		return attempts(s.q)
	}
	q := s.q
	q.Limit = 0 // the newest Limit of those that pass the filters below
	out := slices.DeleteFunc(attempts(q), func(a callback.Attempt) bool {
		return s.command != "" && a.Command != s.command ||
			!s.since.IsZero() && a.Time.Before(s.since) ||
			!s.until.IsZero() && a.Time.After(s.until)
	})
	if s.q.Limit > 0 && len(out) > s.q.Limit {
		out = out[len(out)-s.q.Limit:]
	}
	return out
}

// outcomeList says "allowed, denied, ...".
func outcomeList() string {
	names := make([]string, len(outcomes))
	for i, o := range outcomes {
		names[i] = string(o)
	}
	return strings.Join(names, ", ")
}

// quote quotes a parameter name from the request for an error message,
// cut short.
func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return `"` + strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '"' {
			return '?'
		}
		return r
	}, s), "?") + `"`
}

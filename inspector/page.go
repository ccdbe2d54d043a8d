package inspector

import (
	"cmp"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/imcallback/callback"
)

// pageData is what the page template shows.
type pageData struct {
	ID, App   string
	Search    searchForm
	Outcomes  []callback.Outcome // the choices of the outcome filter
	Back      *backLink
	Story     *EventResponse
	StoryRows []row // Story's records
	Endpoints EndpointsResponse
	Recent    []row // newest first; folded away on an event's page
	CanReplay bool
	HasStore  bool
	Gauges    bool // the Dispatcher-wide gauges: only for a Scope that is All
	Dead      []callback.DeadLetter
	DeadAfter uint64 // the dead letters shown come after this Seq
	DeadNext  uint64 // the Seq the next page starts after; 0: no more
	DeadErr   string
	Err       string
}

// searchForm is the search as the page's form shows it.
type searchForm struct {
	Command, Outcome, Kind, Since, Until string
	Any                                  bool // a filter beyond the app is set
}

// backLink is Options.BackURL and BackLabel.
type backLink struct{ URL, Label string }

var funcs = template.FuncMap{
	"ms": func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	},
	"when":    func(t time.Time) string { return t.Local().Format(TimeFormat) },
	"colour":  colour,
	"meaning": func(o callback.Outcome) string { return meaning[o] },
	"explain": func(dl callback.DeadLetter) string { return Explain(callback.Attempt{Error: dl.Error}) },
}

var page = template.Must(template.New("page").Funcs(funcs).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Callback inspector</title>
<style>
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:10px;color:#222;max-width:1100px}
h1{font-size:18px;margin:0 0 8px}h2{font-size:16px;margin:14px 0 6px}
#back{display:inline-block;margin-bottom:6px}
form.find{display:flex;flex-wrap:wrap;gap:6px}form.find input,form.find select{flex:1 1 140px;min-width:0;padding:6px;font:inherit}
.filters{flex-basis:100%}.more{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}
.more label{display:flex;flex-direction:column;flex:1 1 140px;min-width:0;font-size:12px;color:#555}
.more input,.more select{width:100%;min-width:0;padding:6px;font:inherit}
button{padding:6px 10px;font:inherit}
details>summary{cursor:pointer}
.list{list-style:none;margin:0;padding:0}
.list li{border-bottom:1px solid #ddd;padding:6px 0;display:flex;flex-wrap:wrap;gap:2px 10px;align-items:baseline}
.list .wide{flex-basis:100%;min-width:0;overflow-wrap:anywhere;color:#555}
.list .bad,.bad{color:#a00;font-weight:600}
.list details.wide summary{color:#a00}
code{overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 5px;border-radius:3px;border:1px solid transparent;white-space:nowrap}
.c-ok{background:#cfc}.c-wait{background:#fe9}.c-bad{background:#fcc}.c-drop{background:#ddd}.c-open{background:#fc8}
.c-replay{background:#e6d8ff;border-color:#86c}
.ok{color:#064;font-weight:600}
.summary{background:#f3f3f3;padding:8px;border-radius:4px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f7;padding:6px;margin:4px 0}
#legend dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 8px;margin:6px 0}
#legend dt,#legend dd{margin:0}
</style>
</head>
<body>
{{with .Back}}<a id="back" href="{{.URL}}">&larr; {{.Label}}</a>{{end}}
<h1>Where did my callback go?</h1>
<form class="find" method="get" action="./">
<input name="id" placeholder="webhook-id" value="{{.ID}}" aria-label="webhook-id">
<input name="app" placeholder="app id" value="{{.App}}" inputmode="numeric" aria-label="app id">
<details class="filters"{{if .Search.Any}} open{{end}}><summary>More filters: command, outcome, time</summary>
<div class="more">
<label>command<input name="command" value="{{.Search.Command}}" id="f-command"></label>
<label>outcome<select name="outcome" id="f-outcome"><option value="">any</option>{{range .Outcomes}}<option{{if eq (print .) $.Search.Outcome}} selected{{end}}>{{.}}</option>{{end}}</select></label>
<label>kind<select name="kind" id="f-kind"><option value="">any</option><option{{if eq .Search.Kind "before"}} selected{{end}}>before</option><option{{if eq .Search.Kind "after"}} selected{{end}}>after</option></select></label>
<label>since<input type="datetime-local" step="1" name="since" value="{{.Search.Since}}" id="f-since"></label>
<label>until<input type="datetime-local" step="1" name="until" value="{{.Search.Until}}" id="f-until"></label>
</div></details>
<button type="submit">Look up</button>
</form>
{{if .Err}}<p class="bad" id="error">{{.Err}}</p>{{end}}
{{with .Story}}
<h2>Event <code id="event-id">{{.ID}}</code>{{with .AppID}} of app <span id="event-app">{{.}}</span>{{end}}</h2>
<p class="summary" id="summary">{{.Summary}}</p>
{{if .Error}}<p class="bad">{{.Error}}</p>{{end}}
<ol class="list" id="story">
{{range $.StoryRows}}<li data-outcome="{{.Outcome}}"{{if .Replay}} data-replay="{{.Replay}}"{{end}}><span>{{when .Time}}</span><span>{{.Kind}} {{.Label}}</span><span class="badge c-{{colour .Outcome}}">{{.Outcome}}</span>{{if .Replay}}<span class="badge c-replay">replay{{if gt .Replay 1}} {{.Replay}}{{end}}</span>{{end}}{{with .Status}}<span>HTTP {{.}}</span>{{end}}{{with .Latency}}<span>took {{ms .}}</span>{{end}}<span class="wide">app {{.AppID}} · {{.Command}} · {{.Endpoint}}{{if .OrderKey}} · order key <code>{{.OrderKey}}</code>{{end}}{{if .WaitsFor}} · waits for <a href="?id={{.WaitsFor}}&amp;app={{.AppID}}"><code>{{.WaitsFor}}</code></a>{{end}}{{template "trace" .}}</span>{{if .Error}}<details class="wide err"><summary>{{.Plain}}</summary><code>{{.Error}}</code></details>{{end}}{{if .Body}}<pre class="wide">{{printf "%s" .Body}}</pre>{{end}}</li>
{{end}}</ol>
{{with .DeadLetter}}<div id="dead-letter"><p class="bad">In the dead-letter store since {{when .Time}} after {{.Attempts}} attempts: {{explain .}}</p>
{{if $.CanReplay}}<form method="post" action="api/replay"><input type="hidden" name="app" value="{{.AppID}}"><input type="hidden" name="id" value="{{.ID}}"><input type="hidden" name="back" value="1"><button type="submit">Replay</button></form>{{else}}<p>Replay needs inspector.Options.Authorize or Scope.</p>{{end}}</div>{{end}}
<p><a href="./" id="all">All recent callbacks</a></p>
{{end}}
<details id="legend"><summary>What the outcomes mean</summary><dl>
{{range .Outcomes}}<dt><span class="badge c-{{colour .}}">{{.}}</span></dt><dd>{{meaning .}}</dd>
{{end}}<dt><span class="badge c-replay">replay</span></dt><dd>replayed from the dead letters: its attempts start again at 1</dd></dl>
<p>Times are the server's local time.</p></details>
<h2>Endpoints</h2>
{{if .Gauges}}<p id="queue">Queue depth {{.Endpoints.QueueDepth}}{{with .Endpoints.OldestQueued}}, oldest waiting {{ms .}}{{end}} · in flight: {{.Endpoints.ActiveBefore}} before, {{.Endpoints.ActiveAfter}} after</p>{{end}}
<ul class="list" id="endpoints">
{{range .Endpoints.Endpoints}}<li><code>{{.URL}}</code><span class="{{if eq .Breaker "closed"}}ok{{else}}bad{{end}}">breaker {{.Breaker}}</span><span class="{{if eq .Health "ok"}}ok{{else}}bad{{end}}">{{.Health}}</span>{{if and (eq .Health "disabled") $.CanReplay}}<form method="post" action="api/enable"><input type="hidden" name="url" value="{{.URL}}"><input type="hidden" name="back" value="1"><button type="submit">Enable</button></form>{{end}}</li>
{{else}}<li>No endpoint called yet.</li>{{end}}</ul>
{{if .Story}}<details id="more"><summary>Recent callbacks{{if .HasStore}} and dead letters{{end}}</summary>{{end}}
{{if .HasStore}}<h2>Dead letters</h2>
{{if .DeadErr}}<p class="bad">{{.DeadErr}}</p>{{end}}
<ul class="list" id="dead-letters">
{{range .Dead}}<li><a href="?id={{.ID}}&amp;app={{.AppID}}"><code>{{.ID}}</code></a><span>app {{.AppID}}</span><span>{{.Command}}</span><span>{{.Attempts}} attempts</span><span>{{when .Time}}</span><span class="wide bad">{{explain .}}</span></li>
{{else}}<li>None{{if .DeadAfter}} after these{{end}}.</li>{{end}}</ul>
{{if or .DeadAfter .DeadNext}}<p id="dead-pages">{{if .DeadAfter}}<a id="dead-first" href="?id={{.ID}}&amp;app={{.App}}">First dead letters</a> {{end}}{{if .DeadNext}}<a id="dead-next" href="?id={{.ID}}&amp;app={{.App}}&amp;dead_after={{.DeadNext}}">Next dead letters</a>{{end}}</p>{{end}}{{end}}
<h2>Recent callbacks{{with .App}} of app {{.}}{{end}}{{if .Search.Any}} that match{{end}}</h2>
<ul class="list" id="recent">
{{range .Recent}}<li data-outcome="{{.Outcome}}" data-command="{{.Command}}"><span>{{when .Time}}</span><span>{{.Kind}} {{.Label}}</span><span class="badge c-{{colour .Outcome}}">{{.Outcome}}</span>{{if .Replay}}<span class="badge c-replay">replay</span>{{end}}{{with .Status}}<span>HTTP {{.}}</span>{{end}}{{with .Latency}}<span>took {{ms .}}</span>{{end}}<span class="wide">app {{.AppID}} · {{.Command}} · <a href="?id={{.EventID}}&amp;app={{.AppID}}"><code>{{.EventID}}</code></a>{{if .OrderKey}} · order key <code>{{.OrderKey}}</code>{{end}}{{if .WaitsFor}} · waits for <a href="?id={{.WaitsFor}}&amp;app={{.AppID}}"><code>{{.WaitsFor}}</code></a>{{end}}{{template "trace" .}}</span>{{if .Error}}<details class="wide err"><summary>{{.Plain}}</summary><code>{{.Error}}</code></details>{{end}}</li>
{{else}}<li>No callbacks recorded{{if .Search.Any}} that match{{end}} (or the attempt log is off: Config.AttemptLog).</li>{{end}}</ul>
{{if .Story}}</details>{{end}}
</body>
</html>
{{define "trace"}}{{with .TraceID}} · trace {{if $.TraceLink}}<a href="{{$.TraceLink}}"><code>{{.}}</code></a>{{else}}<code>{{.}}</code>{{end}}{{end}}{{end}}`))

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	scope := scopeOf(r)
	data := pageData{ID: v.Get("id"), App: v.Get("app"), Outcomes: outcomes, CanReplay: h.canReplay(), HasStore: h.o.DeadLetters != nil, Gauges: scope.All,
		Search: searchForm{Command: v.Get("command"), Outcome: v.Get("outcome"), Kind: v.Get("kind"), Since: v.Get("since"), Until: v.Get("until")}}
	data.Search.Any = data.Search != searchForm{}
	if h.o.BackURL != "" {
		data.Back = &backLink{URL: h.o.BackURL, Label: cmp.Or(h.o.BackLabel, "Back")}
	}
	s, err := parseSearch(v, pageFilters)
	if err != nil {
		data.Err = err.Error()
		s = search{}
	}
	s.q.EventID = "" // an id shows its story instead
	s.q.Limit = pageAttempts
	q := s.q
	if data.ID != "" && data.Err == "" {
		app, known, err := h.eventOf(r.Context(), scope, url.Values{"app": {data.App}, "id": {data.ID}})
		if err != nil {
			data.Err = err.Error()
		} else {
			st := h.story(r.Context(), scope, app, known, data.ID)
			data.Story = &st
			data.StoryRows = rowsOf(st.Attempts, h.o.TraceURL)
		}
	}
	data.Endpoints = h.endpointsOf(r.Context(), scope)
	data.Recent = rowsOf(s.run(h.attemptsWithin(scope)), h.o.TraceURL)
	slices.Reverse(data.Recent)
	if h.o.DeadLetters != nil {
		dq := callback.DeadLetterQuery{ByApp: q.ByApp, AppID: q.AppID, Limit: pageDeadLetters}
		if s := v.Get("dead_after"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				data.Err = "dead_after is not a sequence number"
			}
			dq.AfterSeq, data.DeadAfter = n, n
		}
		ctx, cancel := contextWithTimeout(r, h.o.Timeout)
		defer cancel()
		dls, err := h.deadLettersIn(ctx, scope, dq)
		if err != nil {
			data.DeadErr = "dead letters: " + err.Error()
		}
		data.Dead = dls
		if len(dls) == pageDeadLetters {
			data.DeadNext = dls[len(dls)-1].Seq
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	_ = page.Execute(w, data) // an error is the client's connection: the headers are out
}

package inspector

import (
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/imcallback/callback"
)

// pageData is what the page template shows.
type pageData struct {
	ID, App   string
	Story     *EventResponse
	Endpoints EndpointsResponse
	Attempts  []callback.Attempt // newest first
	CanReplay bool
	HasStore  bool
	Gauges    bool // the Dispatcher-wide gauges: only for a Scope that is All
	Dead      []callback.DeadLetter
	DeadAfter uint64 // the dead letters shown come after this Seq
	DeadNext  uint64 // the Seq the next page starts after; 0: no more
	DeadErr   string
	Err       string
}

var funcs = template.FuncMap{
	"ms": func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	},
	"clock":  func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"date":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"status": func(n int) string { return map[bool]string{true: "", false: strconv.Itoa(n)}[n == 0] },
	"class": func(o callback.Outcome) string {
		switch o {
		case callback.OutcomeAllowed, callback.OutcomeDelivered:
			return "ok"
		case callback.OutcomeDenied, callback.OutcomeDropped, callback.OutcomeQueued, callback.OutcomePostponed, callback.OutcomeRetrying:
			return "mid"
		}
		return "bad"
	},
}

var page = template.Must(template.New("page").Funcs(funcs).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Callback inspector</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:12px;color:#222;max-width:1100px}
h1{font-size:18px;margin:0 0 8px}h2{font-size:16px;margin:18px 0 6px}
form.find{display:flex;flex-wrap:wrap;gap:6px}form.find input{flex:1 1 140px;min-width:0;padding:6px;font:inherit}
button{padding:6px 10px;font:inherit}
.list{list-style:none;margin:0;padding:0}
.list li{border-bottom:1px solid #ddd;padding:6px 0;display:flex;flex-wrap:wrap;gap:2px 10px}
.list .wide{flex-basis:100%;overflow-wrap:anywhere;color:#555}
code{overflow-wrap:anywhere}
.ok{color:#064;font-weight:600}.mid{color:#850;font-weight:600}.bad{color:#a00;font-weight:600}
.summary{background:#f3f3f3;padding:8px;border-radius:4px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f7;padding:6px;margin:4px 0}
</style>
</head>
<body>
<h1>Where did my callback go?</h1>
<form class="find" method="get" action="./">
<input name="id" placeholder="webhook-id" value="{{.ID}}" aria-label="webhook-id">
<input name="app" placeholder="app id" value="{{.App}}" inputmode="numeric" aria-label="app id">
<button type="submit">Look up</button>
</form>
{{if .Err}}<p class="bad" id="error">{{.Err}}</p>{{end}}
{{with .Story}}
<h2>Event <code id="event-id">{{.ID}}</code>{{with .AppID}} of app <span id="event-app">{{.}}</span>{{end}}</h2>
<p class="summary" id="summary">{{.Summary}}</p>
{{if .Error}}<p class="bad">{{.Error}}</p>{{end}}
<ol class="list" id="story">
{{range .Attempts}}<li data-outcome="{{.Outcome}}"><span>{{clock .Time}}</span><span>{{.Kind}}</span><span>#{{.Attempt}}</span><span class="{{class .Outcome}}">{{.Outcome}}</span><span>{{status .Status}}</span><span>{{ms .Latency}}</span><span class="wide">app {{.AppID}} · {{.Command}} · {{.Endpoint}}</span>{{if .Error}}<span class="wide bad">{{.Error}}</span>{{end}}{{if .Body}}<pre class="wide">{{printf "%s" .Body}}</pre>{{end}}</li>
{{end}}</ol>
{{with .DeadLetter}}<div id="dead-letter"><p class="bad">In the dead-letter store since {{date .Time}} after {{.Attempts}} attempts: {{.Error}}</p>
{{if $.CanReplay}}<form method="post" action="api/replay"><input type="hidden" name="app" value="{{.AppID}}"><input type="hidden" name="id" value="{{.ID}}"><input type="hidden" name="back" value="1"><button type="submit">Replay</button></form>{{else}}<p>Replay needs inspector.Options.Authorize or Scope.</p>{{end}}</div>{{end}}
{{end}}
<h2>Endpoints</h2>
{{if .Gauges}}<p id="queue">Queue depth {{.Endpoints.QueueDepth}}{{with .Endpoints.OldestQueued}}, oldest waiting {{ms .}}{{end}} · in flight: {{.Endpoints.ActiveBefore}} before, {{.Endpoints.ActiveAfter}} after</p>{{end}}
<ul class="list" id="endpoints">
{{range .Endpoints.Endpoints}}<li><code>{{.URL}}</code><span class="{{if eq .Breaker "closed"}}ok{{else}}bad{{end}}">breaker {{.Breaker}}</span></li>
{{else}}<li>No endpoint called yet.</li>{{end}}</ul>
{{if .HasStore}}<h2>Dead letters</h2>
{{if .DeadErr}}<p class="bad">{{.DeadErr}}</p>{{end}}
<ul class="list" id="dead-letters">
{{range .Dead}}<li><a href="?id={{.ID}}&amp;app={{.AppID}}"><code>{{.ID}}</code></a><span>app {{.AppID}}</span><span>{{.Command}}</span><span>{{.Attempts}} attempts</span><span class="wide bad">{{.Error}}</span></li>
{{else}}<li>None{{if .DeadAfter}} after these{{end}}.</li>{{end}}</ul>
{{if or .DeadAfter .DeadNext}}<p id="dead-pages">{{if .DeadAfter}}<a id="dead-first" href="?id={{.ID}}&amp;app={{.App}}">First dead letters</a> {{end}}{{if .DeadNext}}<a id="dead-next" href="?id={{.ID}}&amp;app={{.App}}&amp;dead_after={{.DeadNext}}">Next dead letters</a>{{end}}</p>{{end}}{{end}}
<h2>Recent callbacks{{with .App}} of app {{.}}{{end}}</h2>
<ul class="list" id="recent">
{{range .Attempts}}<li data-outcome="{{.Outcome}}"><span>{{clock .Time}}</span><span>{{.Kind}}</span><span class="{{class .Outcome}}">{{.Outcome}}</span><span>{{status .Status}}</span><span>{{ms .Latency}}</span><span class="wide">app {{.AppID}} · {{.Command}} · <a href="?id={{.EventID}}&amp;app={{.AppID}}"><code>{{.EventID}}</code></a></span>{{if .Error}}<span class="wide bad">{{.Error}}</span>{{end}}</li>
{{else}}<li>No callbacks recorded (or the attempt log is off: Config.AttemptLog).</li>{{end}}</ul>
</body>
</html>
`))

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	scope := scopeOf(r)
	data := pageData{ID: v.Get("id"), App: v.Get("app"), CanReplay: h.canReplay(), HasStore: h.o.DeadLetters != nil, Gauges: scope.All}
	q := callback.AttemptQuery{Limit: pageAttempts}
	if data.App != "" {
		n, err := strconv.Atoi(data.App)
		if err != nil {
			data.Err = "app is not a number"
		} else {
			q.ByApp, q.AppID = true, n
		}
	}
	if data.ID != "" && data.Err == "" {
		app, known, err := h.eventOf(r.Context(), scope, url.Values{"app": {data.App}, "id": {data.ID}})
		if err != nil {
			data.Err = err.Error()
		} else {
			s := h.story(r.Context(), scope, app, known, data.ID)
			data.Story = &s
		}
	}
	data.Endpoints = h.endpointsOf(r.Context(), scope)
	data.Attempts = h.attemptsIn(scope, q)
	for i, j := 0, len(data.Attempts)-1; i < j; i, j = i+1, j-1 {
		data.Attempts[i], data.Attempts[j] = data.Attempts[j], data.Attempts[i]
	}
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

package inspector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

// TestSearch: api/attempts and the page search by app, command, outcome,
// kind and time range; a parameter that is no filter, or an outcome that
// is none, is an error 400, not ignored. Fails on the code before: command,
// since and until were ignored (every record came back) and so were
// unknown parameters.
func TestSearch(t *testing.T) {
	a := newApp(t, func(id string, _ int) int {
		if strings.HasPrefix(id, "bad") {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	d := newDispatcher(t, callback.Config{URL: a.URL})
	base := serve(t, d, inspector.Options{})
	ctx := context.Background()
	start := time.Now()
	for i, cmd := range []string{"message.send.before", "group.create.before", "message.send.before"} {
		d.Before(callback.WithEventID(ctx, fmt.Sprintf("ok-%d", i)), 1+i%2, cmd, []byte(`{}`))
	}
	require.NoError(t, d.After(callback.WithEventID(ctx, "bad-1"), 1, "message.send.after", []byte(`{}`)))
	waitFor(t, "the After dead-lettered", func() bool {
		return len(d.Attempts(callback.AttemptQuery{Outcome: callback.OutcomeDeadLettered})) == 1
	})
	end := time.Now()

	search := func(query string) []string {
		t.Helper()
		var res inspector.AttemptsResponse
		getJSON(t, base+"api/attempts?"+query, &res)
		var ids []string
		for _, a := range res.Attempts {
			ids = append(ids, a.EventID+":"+string(a.Outcome))
		}
		return ids
	}
	assert.Equal(t, []string{"ok-0:allowed", "ok-2:allowed"}, search("command=message.send.before"))
	assert.Equal(t, []string{"ok-2:allowed"}, search("command=message.send.before&limit=1"), "the newest of those that match")
	assert.Equal(t, []string{"ok-1:allowed"}, search("command=group.create.before&app=2"))
	assert.Empty(t, search("command=group.create.before&app=1"))
	assert.Equal(t, []string{"bad-1:dead-lettered"}, search("command=message.send.after&outcome=dead-lettered"))
	assert.Len(t, search("since="+url.QueryEscape(start.Format(time.RFC3339Nano))), 5, "3 Befores, the After's acceptance and its attempt")
	assert.Empty(t, search("since="+url.QueryEscape(end.Add(time.Second).Format(time.RFC3339Nano))))
	assert.Empty(t, search("until="+url.QueryEscape(start.Add(-time.Second).Format(time.RFC3339Nano))))
	assert.Len(t, search("until="+end.Add(time.Minute).Local().Format("2006-01-02T15:04")), 5, "a local time, as a datetime-local input sends it")

	for query, want := range map[string]string{
		"bogus=1":         `unknown filter "bogus"`,
		"Command=x":       `unknown filter "Command"`,
		"outcome=lost":    "outcome is not one of allowed, denied",
		"since=yesterday": "since is not a time",
		"until=12:00":     "until is not a time",
		"since=2030-01-02T10:00&until=2030-01-01T10:00": "until is before since",
	} {
		status, body := get(t, base+"api/attempts?"+query)
		assert.Equal(t, http.StatusBadRequest, status, query)
		var res struct{ Error string }
		require.NoError(t, json.Unmarshal([]byte(body), &res), body)
		assert.Contains(t, res.Error, want, query)
	}

	// The page: the same filters, in its form; its rows carry their command.
	p := getPage(t, base+"?command=message.send.before")
	var cmds []string
	for _, li := range p.items(t, "recent") {
		cmds = append(cmds, attr(li, "data-command"))
	}
	assert.Equal(t, []string{"message.send.before", "message.send.before"}, cmds)
	assert.Equal(t, "message.send.before", attr(p.byID("f-command"), "value"))
	p = getPage(t, base+"?outcome=dead-lettered")
	require.Len(t, p.items(t, "recent"), 1)
	assert.Contains(t, text(p.items(t, "recent")[0]), "the App backend answered 422 Unprocessable Entity", "the error in words")
	assert.Equal(t, `unknown filter "bogus": use app, id, kind, outcome, command, since, until, dead_after`,
		text(getPage(t, base+"?bogus=1").byID("error")))
}

// TestPageRows: the story's rows say what each record is (an acceptance
// is not attempt 0, a postponement not an attempt), errors are in words
// with the raw one behind them, every outcome has a legend entry, and the
// Back link is there when set. Fails on the code before: bare "#0"
// numbers, raw errors, no legend, no link.
func TestPageRows(t *testing.T) {
	a := newApp(t, always(http.StatusServiceUnavailable))
	d := newDispatcher(t, callback.Config{URL: a.URL, Retries: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond,
		Breaker: callback.Breaker{Disabled: true}})
	base := serve(t, d, inspector.Options{BackURL: "/chat/", BackLabel: "Back to the chat"})
	require.NoError(t, d.After(callback.WithEventID(context.Background(), "e1"), 1, "message.send.after", []byte(`{}`)))
	waitFor(t, "e1 dead-lettered", func() bool {
		return len(d.Attempts(callback.AttemptQuery{EventID: "e1", Outcome: callback.OutcomeDeadLettered})) == 1
	})

	p := getPage(t, base+"?id=e1")
	var rows []string
	for _, li := range p.items(t, "story") {
		var spans []string
		for c := range li.ChildNodes() {
			if c.Type == html.ElementNode && c.Data == "span" && !strings.Contains(attr(c, "class"), "wide") {
				spans = append(spans, text(c))
			}
		}
		rows = append(rows, strings.Join(spans[1:], " | ")) // without the time
	}
	assert.Equal(t, []string{
		"after accepted | queued",
		"after attempt 1 | retrying | HTTP 503 | took " + rowsLatency(t, d, "e1", 1),
		"after attempt 2 | dead-lettered | HTTP 503 | took " + rowsLatency(t, d, "e1", 2),
	}, rows)
	story := text(p.byID("story"))
	assert.NotContains(t, story, "#0")
	assert.Contains(t, story, "the App backend answered 503 Service Unavailable")
	assert.Contains(t, story, "callback: App backend answered a non-2xx status: 503", "the raw error, behind the words")
	for _, o := range []string{"allowed", "denied", "dropped", "failed-open", "failed-closed", "queued", "retrying", "postponed", "delivered", "dead-lettered", "rejected", "replay"} {
		assert.Contains(t, text(p.byID("legend")), o)
	}
	back := p.byID("back")
	require.NotNil(t, back)
	assert.Equal(t, "/chat/", attr(back, "href"))
	assert.Equal(t, "← Back to the chat", text(back))
	assert.Nil(t, getPage(t, serve(t, d, inspector.Options{})).byID("back"), "no link unless set")
}

// rowsLatency is how the page shows the latency of id's attempt n.
func rowsLatency(t *testing.T, d *callback.Dispatcher, id string, n int) string {
	t.Helper()
	for _, a := range d.Attempts(callback.AttemptQuery{EventID: id}) {
		if a.Attempt == n && a.Outcome != callback.OutcomeQueued {
			return fmt.Sprintf("%.1f ms", float64(a.Latency)/float64(time.Millisecond))
		}
	}
	t.Fatalf("no attempt %d of %s", n, id)
	return ""
}

// TestStoryReplays: the story of a replayed event counts its replays and
// marks their records. Fails on the code before: no replay was told apart.
func TestStoryReplays(t *testing.T) {
	var accept atomicBool
	a := newApp(t, func(string, int) int {
		if accept.get() {
			return http.StatusOK
		}
		return http.StatusUnprocessableEntity
	})
	q := newQueue(t, startNATS(t))
	d := newDispatcher(t, callback.Config{URL: a.URL, Queue: q.ForDispatcher()})
	base := serve(t, d, inspector.Options{DeadLetters: q, Authorize: func(*http.Request) bool { return true }})
	require.NoError(t, d.After(callback.WithEventID(context.Background(), "r1"), 1, "message.send.after", []byte(`{}`)))
	dead := func() bool { return event(t, base, "r1").DeadLetter != nil }
	waitFor(t, "the dead letter", dead)
	assert.Zero(t, event(t, base, "r1").Replays)

	res := post(t, base+"api/replay", url.Values{"id": {"r1"}}, nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	waitFor(t, "the replay dead-lettered", func() bool { return len(event(t, base, "r1").Attempts) == 3 && dead() })
	accept.set(true)
	res = post(t, base+"api/replay", url.Values{"id": {"r1"}}, nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	waitFor(t, "the second replay delivered", func() bool { return strings.HasPrefix(event(t, base, "r1").Summary, "Delivered") })

	ev := event(t, base, "r1")
	assert.Equal(t, []string{"queued#0:0", "dead-lettered#1:422", "dead-lettered#1:422", "delivered#1:200"}, outcomes(ev.Attempts))
	assert.Equal(t, 2, ev.Replays)
	assert.True(t, strings.HasSuffix(ev.Summary, " It was replayed 2 times from the dead letters."), ev.Summary)
	var marks []string
	for _, li := range getPage(t, base+"?id=r1").items(t, "story") {
		marks = append(marks, attr(li, "data-replay"))
	}
	assert.Equal(t, []string{"", "", "1", "2"}, marks)
}

// TestExplain: errors in words a person reads.
func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		a    callback.Attempt
		want string
	}{
		{callback.Attempt{}, ""},
		{callback.Attempt{Error: `Post "http://127.0.0.1:8989/callback": context deadline exceeded`, Latency: 2001 * time.Millisecond}, "timed out after 2 s"},
		{callback.Attempt{Error: `Post "http://x/cb": net/http: request canceled (Client.Timeout exceeded while awaiting headers)`, Latency: 250 * time.Millisecond}, "timed out after 0.3 s"},
		{callback.Attempt{Error: "context deadline exceeded", Latency: 20 * time.Millisecond}, "timed out after 20 ms"},
		{callback.Attempt{Error: fmt.Errorf("%w: 503", callback.ErrStatus).Error(), Status: 503}, "the App backend answered 503 Service Unavailable"},
		{callback.Attempt{Error: fmt.Errorf("%w: 599", callback.ErrStatus).Error()}, "the App backend answered 599"},
		{callback.Attempt{Error: fmt.Errorf("%w: circuit breaker is open", callback.ErrBreakerOpen).Error()}, "not sent: the endpoint's circuit breaker is open after repeated failures"},
		{callback.Attempt{Error: `Post "http://127.0.0.1:1/cb": dial tcp 127.0.0.1:1: connect: connection refused`}, "could not connect to the App backend (connection refused: is it running?)"},
		{callback.Attempt{Error: fmt.Errorf("%w: 401", callback.ErrSignatureRefused).Error(), Status: 401}, "the App backend refused the signature (401): a wrong secret, or a clock far off"},
		{callback.Attempt{Error: errors.Join(callback.ErrClosed).Error()}, "not sent: the IM server was shutting down"},
		{callback.Attempt{Error: "callback: something new"}, "something new"},
	} {
		assert.Equal(t, tc.want, inspector.Explain(tc.a), tc.a.Error)
	}
}

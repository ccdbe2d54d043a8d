package inspector_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

func TestAuthorize(t *testing.T) {
	a := newApp(t, always(http.StatusOK))
	d := newDispatcher(t, callback.Config{URL: a.URL})
	q := newQueue(t, startNATS(t))
	dq := newDispatcher(t, callback.Config{URL: a.URL, Queue: q.ForDispatcher()})
	_ = dq

	t.Run("refused everywhere", func(t *testing.T) {
		base := serve(t, d, inspector.Options{Authorize: func(*http.Request) bool { return false }})
		for _, path := range []string{"", "?id=x", "api/attempts", "api/event?id=x", "api/endpoints", "api/deadletters"} {
			status, body := get(t, base+path)
			assert.Equal(t, http.StatusForbidden, status, "GET %s", path)
			assert.NotContains(t, body, a.URL)
		}
		res := post(t, base+"api/replay", url.Values{"id": {"x"}}, nil)
		assert.Equal(t, http.StatusForbidden, res.StatusCode)
	})

	t.Run("replay refused without Authorize", func(t *testing.T) {
		base := serve(t, dq, inspector.Options{DeadLetters: q})
		status, _ := get(t, base+"api/attempts")
		assert.Equal(t, http.StatusOK, status, "reading needs no Authorize")
		res := post(t, base+"api/replay", url.Values{"id": {"x"}}, nil)
		assert.Equal(t, http.StatusForbidden, res.StatusCode)
		p := getPage(t, base+"?id=x")
		assert.Empty(t, p.all("form")[1:], "no replay form without Authorize, only the search")
	})

	t.Run("replay only by POST, same origin", func(t *testing.T) {
		base := serve(t, dq, inspector.Options{DeadLetters: q, Authorize: func(*http.Request) bool { return true }})
		status, _ := get(t, base+"api/replay?id=x")
		assert.Equal(t, http.StatusMethodNotAllowed, status)
		res := post(t, base+"api/replay", url.Values{"id": {"x"}}, map[string]string{"Sec-Fetch-Site": "cross-site"})
		assert.Equal(t, http.StatusForbidden, res.StatusCode, "a cross-site form post is refused")
		res = post(t, base+"api/replay", url.Values{"id": {"x"}}, map[string]string{"Origin": "https://evil.example"})
		assert.Equal(t, http.StatusForbidden, res.StatusCode, "a foreign Origin is refused")
		res = post(t, base+"api/replay", url.Values{"id": {"unknown"}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
		assert.Equal(t, http.StatusNotFound, res.StatusCode, "allowed, and the id is unknown")
		res = post(t, base+"api/replay", url.Values{}, nil)
		assert.Equal(t, http.StatusBadRequest, res.StatusCode)
	})

	t.Run("no store", func(t *testing.T) {
		base := serve(t, d, inspector.Options{Authorize: func(*http.Request) bool { return true }})
		status, _ := get(t, base+"api/deadletters")
		assert.Equal(t, http.StatusNotFound, status)
		res := post(t, base+"api/replay", url.Values{"id": {"x"}}, nil)
		assert.Equal(t, http.StatusNotFound, res.StatusCode)
	})
}

// TestHostile: commands, bodies and errors come from peers; the page
// escapes all of them, and the JSON carries them as data.
func TestHostile(t *testing.T) {
	const evil = `<script>alert(1)</script><img src=x onerror=alert(2)>`
	a := newApp(t, always(http.StatusOK))
	d := newDispatcher(t, callback.Config{URL: a.URL, AttemptBodies: true})
	base := serve(t, d, inspector.Options{})
	ctx := callback.WithEventID(context.Background(), `"><b>id</b>`)
	body := fmt.Sprintf(`{"text":%q}`, "</pre>"+evil)
	d.Before(ctx, 1, evil, []byte(body))

	p := getPage(t, base+"?id="+url.QueryEscape(`"><b>id</b>`))
	assert.Empty(t, p.all("img"))
	assert.Empty(t, p.all("b"))
	story := text(p.byID("story"))
	assert.Contains(t, story, evil, "shown as text")
	assert.Contains(t, story, "</pre>"+evil, "the body, as text")
	assert.Equal(t, `"><b>id</b>`, text(p.byID("event-id")))
	assert.Contains(t, text(p.byID("recent")), evil)

	var res inspector.AttemptsResponse
	getJSON(t, base+"api/attempts", &res)
	require.Len(t, res.Attempts, 1)
	assert.Equal(t, evil, res.Attempts[0].Command)
	assert.JSONEq(t, body, string(res.Attempts[0].Body))
}

func TestPage(t *testing.T) {
	a := newApp(t, always(http.StatusOK))
	d := newDispatcher(t, callback.Config{URL: a.URL + "/cb?token=hidden"})
	base := serve(t, d, inspector.Options{})
	for i := range 3 {
		d.Before(context.Background(), i, "message.send.before", []byte(`{}`))
	}
	p := getPage(t, base)
	var viewport string
	for _, m := range p.all("meta") {
		if attr(m, "name") == "viewport" {
			viewport = attr(m, "content")
		}
	}
	assert.Equal(t, "width=device-width, initial-scale=1", viewport)
	assert.Empty(t, p.all("link"), "nothing loaded from elsewhere")
	assert.Len(t, p.items(t, "recent"), 3)
	assert.Nil(t, p.byID("story"), "no story without an id")
	assert.NotContains(t, text(p.root), "hidden", "the endpoint's query is hashed")
	assert.Contains(t, text(p.byID("endpoints")), "breaker closed")

	p = getPage(t, base+"?app=2")
	recent := p.items(t, "recent")
	require.Len(t, recent, 1)
	assert.Contains(t, text(recent[0]), "app 2 ")

	status, _ := get(t, base+"?app=x")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "app is not a number", text(getPage(t, base+"?app=x").byID("error")))
	status, _ = get(t, base+"nothing-here")
	assert.Equal(t, http.StatusNotFound, status)
}

// TestPollAttempts: a page polls api/attempts with after= the last seq.
func TestPollAttempts(t *testing.T) {
	a := newApp(t, always(http.StatusOK))
	d := newDispatcher(t, callback.Config{URL: a.URL})
	base := serve(t, d, inspector.Options{})
	var res inspector.AttemptsResponse
	getJSON(t, base+"api/attempts", &res)
	assert.Empty(t, res.Attempts)
	assert.NotNil(t, res.Attempts, "an empty list, not null")
	assert.Zero(t, res.LastSeq)

	d.Before(context.Background(), 0, "message.send.before", []byte(`{}`))
	d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	getJSON(t, base+"api/attempts?after=0", &res)
	require.Len(t, res.Attempts, 2)
	last := res.LastSeq
	assert.Equal(t, res.Attempts[1].Seq, last)

	require.NoError(t, d.After(context.Background(), 0, "message.send.after", []byte(`{}`)))
	waitFor(t, "the delivery", func() bool {
		getJSON(t, base+fmt.Sprintf("api/attempts?after=%d&kind=after", last), &res)
		return len(res.Attempts) == 2
	})
	assert.Equal(t, []string{"queued#0:0", "delivered#1:200"}, outcomes(sortByTime(res.Attempts)))

	getJSON(t, base+"api/attempts?app=0&kind=before", &res)
	require.Len(t, res.Attempts, 1, "app 0 is an app")
	getJSON(t, base+"api/attempts?limit=1", &res)
	require.Len(t, res.Attempts, 1)
	for _, bad := range []string{"app=x", "kind=sideways", "after=-1", "limit=x"} {
		status, body := get(t, base+"api/attempts?"+bad)
		assert.Equal(t, http.StatusBadRequest, status, bad)
		assert.True(t, strings.HasPrefix(body, `{"error":`), body)
	}
	status, _ := get(t, base+"api/event")
	assert.Equal(t, http.StatusBadRequest, status, "id is required")
}

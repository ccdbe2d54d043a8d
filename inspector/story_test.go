package inspector_test

import (
	"context"
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

// storyItems returns the outcome of each entry of the page's story.
func storyItems(t *testing.T, p page) []string {
	var out []string
	for _, li := range p.items(t, "story") {
		out = append(out, attr(li, "data-outcome"))
	}
	return out
}

// A webhook-id answered 2xx: one Before, allowed with the App's 200.
func TestStoryAnswered2xx(t *testing.T) {
	a := newApp(t, always(http.StatusOK))
	d := newDispatcher(t, callback.Config{URL: a.URL + "/cb"})
	base := serve(t, d, inspector.Options{})
	ctx := callback.WithEventID(context.Background(), "msg-42/before")
	require.NoError(t, d.Before(ctx, 1400, "message.send.before", []byte(`{"text":"hi"}`)).Err)

	ev := event(t, base, "msg-42/before")
	assert.Equal(t, "msg-42/before", ev.ID)
	require.Equal(t, []string{"allowed#1:200"}, outcomes(ev.Attempts))
	at := ev.Attempts[0]
	assert.Equal(t, 1400, at.AppID)
	assert.Equal(t, "message.send.before", at.Command)
	assert.Equal(t, callback.KindBefore, at.Kind)
	assert.Contains(t, at.Endpoint, "/cb")
	assert.Positive(t, at.Latency)
	assert.Nil(t, ev.DeadLetter)
	assert.Equal(t, "Before: the App backend answered 200 and the event was allowed.", ev.Summary)

	p := getPage(t, base+"?id="+url.QueryEscape("msg-42/before"))
	assert.Equal(t, "msg-42/before", text(p.byID("event-id")))
	assert.Equal(t, ev.Summary, text(p.byID("summary")))
	assert.Equal(t, []string{"allowed"}, storyItems(t, p))
	assert.Equal(t, 1, a.requests("msg-42/before"))
}

// A webhook-id answered 5xx, then 2xx: queued, attempt 1 failed and
// retried, attempt 2 delivered.
func TestStory5xxThen2xx(t *testing.T) {
	a := newApp(t, func(_ string, seen int) int {
		if seen == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	d := newDispatcher(t, callback.Config{URL: a.URL, RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond})
	base := serve(t, d, inspector.Options{})
	ctx := callback.WithEventID(context.Background(), "msg-43/after")
	require.NoError(t, d.After(ctx, 1400, "message.send.after", []byte(`{"text":"hi"}`)))
	waitFor(t, "the delivery", func() bool {
		ev := event(t, base, "msg-43/after")
		return len(ev.Attempts) == 3
	})

	ev := event(t, base, "msg-43/after")
	require.Equal(t, []string{"queued#0:0", "retrying#1:503", "delivered#2:200"}, outcomes(ev.Attempts))
	assert.Contains(t, ev.Attempts[1].Error, "non-2xx status: 503")
	assert.Equal(t, "Delivered: answered 200 at attempt 2 (2 attempts in all).", ev.Summary)
	assert.Nil(t, ev.DeadLetter)

	p := getPage(t, base+"?id=msg-43/after")
	assert.Equal(t, []string{"queued", "retrying", "delivered"}, storyItems(t, p))
	assert.Contains(t, text(p.byID("story")), "non-2xx status: 503")
	assert.Equal(t, 2, a.requests("msg-43/after"))
}

// A dead-lettered webhook-id, in a durable queue: its attempt, its dead
// letter, and a replay that delivers it, once.
func TestStoryDeadLettered(t *testing.T) {
	var accept atomicBool
	a := newApp(t, func(string, int) int {
		if accept.get() {
			return http.StatusOK
		}
		return http.StatusUnprocessableEntity
	})
	q := newQueue(t, startNATS(t))
	d := newDispatcher(t, callback.Config{URL: a.URL, Queue: q.ForDispatcher()})
	const admin = "Bearer ops"
	base := serve(t, d, inspector.Options{
		DeadLetters: q,
		Authorize:   func(r *http.Request) bool { return r.Header.Get("Authorization") == admin },
	})
	auth := map[string]string{"Authorization": admin}
	ctx := callback.WithEventID(context.Background(), "msg-44/after")
	require.NoError(t, d.After(ctx, 1400, "group.member.add.after", []byte(`{"g":1}`)))
	// The Authorize func guards everything: the test's GETs carry it.
	http.DefaultClient.Transport = headerTransport(auth)
	t.Cleanup(func() { http.DefaultClient.Transport = nil })
	waitFor(t, "the dead letter", func() bool { return event(t, base, "msg-44/after").DeadLetter != nil })

	ev := event(t, base, "msg-44/after")
	require.Equal(t, []string{"queued#0:0", "dead-lettered#1:422"}, outcomes(ev.Attempts))
	dl := ev.DeadLetter
	assert.Equal(t, "msg-44/after", dl.ID)
	assert.Equal(t, 1400, dl.AppID)
	assert.Equal(t, "group.member.add.after", dl.Command)
	assert.Equal(t, 1, dl.Attempts)
	assert.Contains(t, dl.Error, "422")
	assert.Equal(t, "Dead-lettered after 1 attempt: "+ev.Attempts[1].Error+".", ev.Summary)

	var dls inspector.DeadLettersResponse
	getJSON(t, base+"api/deadletters", &dls)
	require.Len(t, dls.DeadLetters, 1)
	assert.Equal(t, dls.DeadLetters[0].Seq, dls.LastSeq)

	p := getPage(t, base+"?id=msg-44/after")
	assert.Equal(t, []string{"queued", "dead-lettered"}, storyItems(t, p))
	box := p.byID("dead-letter")
	require.NotNil(t, box, "the page shows the dead letter")
	var form *formInfo
	for n := range box.Descendants() {
		if n.Type == html.ElementNode && n.Data == "form" {
			form = &formInfo{method: attr(n, "method"), action: attr(n, "action")}
		}
	}
	require.NotNil(t, form, "a replay form")
	assert.Equal(t, "post", form.method)
	assert.Equal(t, "api/replay", form.action)

	// Replay as the page's form does: a POST, answered with a redirect
	// back to the event.
	accept.set(true)
	res := post(t, base+form.action, url.Values{"id": {"msg-44/after"}, "back": {"1"}}, auth)
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	assert.Equal(t, "../?app=1400&id=msg-44%2Fafter", res.Header.Get("Location"))
	waitFor(t, "the replayed delivery", func() bool {
		return strings.HasPrefix(event(t, base, "msg-44/after").Summary, "Delivered")
	})
	// A second replay finds no dead letter, and sends nothing.
	res = post(t, base+"api/replay", url.Values{"id": {"msg-44/after"}}, auth)
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
	ev = event(t, base, "msg-44/after")
	require.Equal(t, []string{"queued#0:0", "dead-lettered#1:422", "delivered#1:200"}, outcomes(ev.Attempts))
	assert.Nil(t, ev.DeadLetter)
	assert.Equal(t, 2, a.requests("msg-44/after"))
}

// Never sent: an unknown webhook-id, and an event queued while its
// endpoint's breaker is open.
func TestStoryNeverSent(t *testing.T) {
	a := newApp(t, always(http.StatusServiceUnavailable))
	d := newDispatcher(t, callback.Config{URL: a.URL, Breaker: callback.Breaker{ConsecutiveFailures: 1, Cooldown: time.Hour}})
	t.Cleanup(func() { // the event cannot be delivered: give it up at once
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = d.Close(ctx)
	})
	base := serve(t, d, inspector.Options{})

	ev := event(t, base, "msg-never")
	assert.Empty(t, ev.Attempts)
	assert.Nil(t, ev.DeadLetter)
	assert.True(t, strings.HasPrefix(ev.Summary, "Never sent by this process"), ev.Summary)
	p := getPage(t, base+"?id=msg-never")
	assert.Empty(t, p.items(t, "story"))
	assert.Equal(t, ev.Summary, text(p.byID("summary")))

	// One failure opens the breaker; the After event then waits unsent.
	d.Before(context.Background(), 5, "message.send.before", []byte(`{}`))
	var eps inspector.EndpointsResponse
	getJSON(t, base+"api/endpoints", &eps)
	require.Len(t, eps.Endpoints, 1)
	assert.Equal(t, "open", eps.Endpoints[0].Breaker)
	ctx := callback.WithEventID(context.Background(), "msg-45/after")
	require.NoError(t, d.After(ctx, 5, "message.send.after", []byte(`{}`)))
	ev = event(t, base, "msg-45/after")
	require.Equal(t, []string{"queued#0:0"}, outcomes(ev.Attempts))
	assert.True(t, strings.HasPrefix(ev.Summary, "Queued, never sent yet"), ev.Summary)
	assert.Zero(t, a.requests("msg-45/after"))
	p = getPage(t, base+"?id=msg-45/after")
	assert.Equal(t, []string{"queued"}, storyItems(t, p))
	assert.Contains(t, text(p.byID("endpoints")), "breaker open")
}

type formInfo struct{ method, action string }

// The page lists dead letters a hundred at a time, with a link to the next
// hundred and one back to the first.
func TestPageDeadLettersPaged(t *testing.T) {
	a := newApp(t, always(http.StatusUnprocessableEntity)) // not retried: dead at once
	q := newQueue(t, startNATS(t))
	d := newDispatcher(t, callback.Config{URL: a.URL, Queue: q.ForDispatcher(), AfterLimit: callback.AfterLimit{Rate: 1e9}})
	base := serve(t, d, inspector.Options{DeadLetters: q})
	const letters = 105
	ctx := context.Background()
	for i := range letters {
		require.NoError(t, d.After(callback.WithEventID(ctx, "dl-"+itoa(1000+i)), 7, "message.send.after", []byte(`{}`)))
	}
	waitFor(t, "the dead letters", func() bool {
		n, err := q.DeadLetters(ctx)
		return err == nil && n == letters
	})
	ids := func(p page) []string { // each entry's link: ?id=<webhook-id>
		var out []string
		for _, li := range p.items(t, "dead-letters") {
			for n := range li.Descendants() {
				if n.Type == html.ElementNode && n.Data == "a" {
					out = append(out, attr(n, "href"))
					break
				}
			}
		}
		return out
	}

	first := getPage(t, base+"?app=7")
	require.Len(t, ids(first), 100)
	assert.Nil(t, first.byID("dead-first"), "the first page links to no first page")
	next := first.byID("dead-next")
	require.NotNil(t, next, "a link to the next page")
	second := getPage(t, base+attr(next, "href"))
	rest := ids(second)
	require.Len(t, rest, letters-100)
	assert.Nil(t, second.byID("dead-next"), "no page after the last")
	require.NotNil(t, second.byID("dead-first"))
	seen := map[string]bool{}
	for _, href := range append(ids(first), rest...) {
		seen[href] = true
	}
	assert.Len(t, seen, letters, "every dead letter once over the two pages")
	assert.Equal(t, "dead_after is not a sequence number", text(getPage(t, base+"?dead_after=x").byID("error")))
}

// An event queued behind another of its order key: its story shows the
// key and links the event it waits for.
func TestStoryOrderKey(t *testing.T) {
	a := newApp(t, always(http.StatusServiceUnavailable))
	d := newDispatcher(t, callback.Config{URL: a.URL + "/cb", RetryWaitMin: time.Hour, RetryWaitMax: time.Hour})
	base := serve(t, d, inspector.Options{})
	ctx := callback.WithOrderKey(context.Background(), "group-7")
	require.NoError(t, d.After(callback.WithEventID(ctx, "m-1"), 3, "group.message.after", []byte(`{}`)))
	require.NoError(t, d.After(callback.WithEventID(ctx, "m-2"), 3, "group.message.after", []byte(`{}`)))

	ev := event(t, base, "m-2")
	require.NotEmpty(t, ev.Attempts)
	assert.Equal(t, "group-7", ev.Attempts[0].OrderKey)
	assert.Equal(t, "m-1", ev.Attempts[0].WaitsFor)

	p := getPage(t, base+"?id=m-2")
	items := p.items(t, "story")
	require.NotEmpty(t, items)
	assert.Contains(t, text(items[0]), "order key group-7")
	assert.Contains(t, text(items[0]), "waits for m-1")
}

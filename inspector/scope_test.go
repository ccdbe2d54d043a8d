package inspector_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

// tenantScope is a per-tenant deployment's Scope: the tenant's app comes
// from its credentials (a header here), "admin" sees everything.
func tenantScope(r *http.Request) (inspector.Scope, bool) {
	switch who := r.Header.Get("X-Tenant"); who {
	case "admin":
		return inspector.Scope{All: true}, true
	case "":
		return inspector.Scope{}, false
	default:
		app, err := strconv.Atoi(who)
		return inspector.Scope{Apps: []int{app}}, err == nil
	}
}

// as fetches u as tenant who and returns the status and the body.
func as(t *testing.T, who, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant", who)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// asJSON fetches u as tenant who, requires a 200, and decodes it into v.
func asJSON(t *testing.T, who, u string, v any) string {
	t.Helper()
	status, body := as(t, who, u)
	require.Equal(t, http.StatusOK, status, "GET %s as %s: %s", u, who, body)
	require.NoError(t, json.Unmarshal([]byte(body), v))
	return body
}

// TestScopedTenant: an inspector scoped to app 1 cannot read app 2's
// event, body, dead letter or endpoint URL, nor replay app 2's dead letter,
// even under a webhook-id both apps use; another app's id answers as an
// unknown one does. The admin scope sees both.
func TestScopedTenant(t *testing.T) {
	var accept atomicBool
	a := newApp(t, func(string, int) int {
		if accept.get() {
			return http.StatusOK
		}
		return http.StatusUnprocessableEntity // not retried: dead at once
	})
	q := newQueue(t, startNATS(t))
	apps := callback.ResolverFunc(func(_ context.Context, app int) (callback.Endpoint, error) {
		return callback.Endpoint{URL: a.URL + "/app" + strconv.Itoa(app) + "-hook?token=t" + strconv.Itoa(app)}, nil
	})
	d := newDispatcher(t, callback.Config{Resolver: apps, Queue: q.ForDispatcher(), AttemptBodies: true})
	base := serve(t, d, inspector.Options{DeadLetters: q, Scope: tenantScope})
	ctx := context.Background()
	after := func(app int, id, body string) {
		require.NoError(t, d.After(callback.WithEventID(ctx, id), app, "message.send.after", []byte(body)))
	}
	after(2, "only-2", `{"text":"app2-secret-a"}`)
	after(2, "shared", `{"text":"app2-secret-b"}`)
	after(1, "shared", `{"text":"app1-text"}`)
	d.Before(callback.WithEventID(ctx, "before-2"), 2, "message.send.before", []byte(`{"text":"app2-secret-c"}`))
	waitFor(t, "three dead letters", func() bool {
		n, err := q.DeadLetters(ctx)
		return err == nil && n == 3
	})
	// What tenant 1 must never see of app 2.
	hidden := []string{"app2-secret", "app2-hook", "only-2", "before-2", `"app_id":2`}
	noneOf := func(t *testing.T, what, body string) {
		t.Helper()
		for _, h := range hidden {
			assert.NotContains(t, body, h, "%s shows %q of app 2", what, h)
		}
	}

	t.Run("events of app 2 are unknown", func(t *testing.T) {
		for _, id := range []string{"only-2", "before-2"} {
			for _, app := range []string{"", "&app=2"} {
				var got, unknown inspector.EventResponse
				asJSON(t, "1", base+"api/event?id="+id+app, &got)
				asJSON(t, "1", base+"api/event?id=never-sent"+app, &unknown)
				unknown.ID = got.ID
				assert.Equal(t, unknown, got, "app 2's %s%s answers as an unknown id", id, app)
				assert.Empty(t, got.Attempts)
				assert.Nil(t, got.DeadLetter)
			}
		}
		var shared inspector.EventResponse
		body := asJSON(t, "1", base+"api/event?id=shared", &shared)
		noneOf(t, "api/event?id=shared", body)
		require.NotNil(t, shared.AppID)
		assert.Equal(t, 1, *shared.AppID)
		require.NotNil(t, shared.DeadLetter, "app 1's own dead letter of the shared id")
		assert.Equal(t, 1, shared.DeadLetter.AppID)
		require.NotEmpty(t, shared.Attempts)
		for _, at := range shared.Attempts {
			assert.Equal(t, 1, at.AppID)
		}
	})

	t.Run("lists hold app 1 alone", func(t *testing.T) {
		for _, path := range []string{
			"api/attempts", "api/attempts?app=2", "api/attempts?id=only-2", "api/attempts?id=shared",
			"api/deadletters?bodies=1", "api/deadletters?app=2&bodies=1", "api/deadletters?id=only-2&bodies=1",
			"api/deadletters?id=shared&bodies=1", "api/endpoints",
		} {
			status, body := as(t, "1", base+path)
			assert.Equal(t, http.StatusOK, status, path)
			noneOf(t, path, body)
		}
		var res inspector.AttemptsResponse
		asJSON(t, "1", base+"api/attempts", &res)
		require.NotEmpty(t, res.Attempts)
		assert.Contains(t, string(res.Attempts[0].Body), "app1-text", "its own bodies, with AttemptBodies")
		var dls inspector.DeadLettersResponse
		asJSON(t, "1", base+"api/deadletters?bodies=1", &dls)
		require.Len(t, dls.DeadLetters, 1)
		assert.Equal(t, 1, dls.DeadLetters[0].AppID)
		assert.JSONEq(t, `{"text":"app1-text"}`, string(dls.DeadLetters[0].Body))
		asJSON(t, "1", base+"api/deadletters?app=2", &dls)
		assert.Empty(t, dls.DeadLetters)

		var eps inspector.EndpointsResponse
		asJSON(t, "1", base+"api/endpoints", &eps)
		require.Len(t, eps.Endpoints, 1)
		assert.Contains(t, eps.Endpoints[0].URL, "/app1-hook?#", "its own endpoint, named as in Stats")
		assert.Zero(t, eps.Total, "no Dispatcher-wide counts")
		var all inspector.EndpointsResponse
		asJSON(t, "admin", base+"api/endpoints", &all)
		assert.Len(t, all.Endpoints, 2)
		assert.Contains(t, all.Endpoints, eps.Endpoints[0], "the same name and state as the admin sees")
	})

	t.Run("the page shows app 1 alone", func(t *testing.T) {
		for _, path := range []string{"", "?app=2", "?id=only-2", "?id=only-2&app=2", "?id=shared", "?id=shared&app=2"} {
			status, body := as(t, "1", base+path)
			assert.Equal(t, http.StatusOK, status, path)
			// The id asked for is echoed in the search box and heading:
			// leave it out of the check.
			body = strings.ReplaceAll(body, "only-2", "")
			noneOf(t, "the page "+path, body)
		}
		_, body := as(t, "1", base+"?id=shared")
		root, err := html.Parse(strings.NewReader(body))
		require.NoError(t, err)
		p := page{root}
		assert.Equal(t, "1", text(p.byID("event-app")), "the story of app 1's event")
		for _, li := range p.items(t, "dead-letters") {
			for n := range li.Descendants() {
				if n.Type == html.ElementNode && n.Data == "a" {
					assert.Equal(t, "?id=shared&app=1", attr(n, "href"), "a link names the app")
				}
			}
		}
	})

	t.Run("replay of app 2 is not found", func(t *testing.T) {
		same := map[string]string{"Sec-Fetch-Site": "same-origin", "X-Tenant": "1"}
		for _, form := range []url.Values{
			{"id": {"only-2"}}, {"id": {"only-2"}, "app": {"2"}}, {"id": {"shared"}, "app": {"2"}},
		} {
			res := post(t, base+"api/replay", form, same)
			assert.Equal(t, http.StatusNotFound, res.StatusCode, "replay %v", form)
		}
		app2, err := q.ListDeadLetters(ctx, callback.DeadLetterQuery{ByApp: true, AppID: 2})
		require.NoError(t, err)
		assert.Len(t, app2, 2, "app 2's dead letters stay")

		accept.set(true)
		res := post(t, base+"api/replay", url.Values{"id": {"shared"}}, same)
		require.Equal(t, http.StatusOK, res.StatusCode, "app 1's own, named by its id alone")
		waitFor(t, "app 1's replayed event", func() bool {
			var ev inspector.EventResponse
			asJSON(t, "1", base+"api/event?id=shared", &ev)
			return ev.DeadLetter == nil && strings.HasPrefix(ev.Summary, "Delivered")
		})
		app2, err = q.ListDeadLetters(ctx, callback.DeadLetterQuery{ByApp: true, AppID: 2})
		require.NoError(t, err)
		assert.Len(t, app2, 2, "app 2's dead letter of the shared id stays")
	})

	t.Run("admin sees both", func(t *testing.T) {
		status, body := as(t, "admin", base+"api/event?id=only-2")
		assert.Equal(t, http.StatusOK, status)
		assert.Contains(t, body, "app2-hook")
		var ev inspector.EventResponse
		asJSON(t, "admin", base+"api/event?id=shared&app=2", &ev)
		require.NotNil(t, ev.DeadLetter)
		assert.Equal(t, 2, ev.DeadLetter.AppID)
		status, body = as(t, "admin", base+"api/event?id=shared")
		assert.Equal(t, http.StatusBadRequest, status, "two apps' events: the app is needed")
		assert.Contains(t, body, "apps 1, 2")
		status, _ = as(t, "", base+"api/attempts")
		assert.Equal(t, http.StatusForbidden, status, "no scope, no answer")
	})
}

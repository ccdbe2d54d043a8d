package inspector_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

// postJSON posts form to u and decodes the JSON answer into v.
func postJSON(t *testing.T, u string, form url.Values, v any) int {
	t.Helper()
	res, err := http.Post(u, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v), string(b))
	return res.StatusCode
}

// TestReplayMatchingAPI: api/replay-matching counts with dry_run=1, then
// replays an app's dead letters; it is refused without Authorize or
// Scope, and outside the request's scope.
func TestReplayMatchingAPI(t *testing.T) {
	var accept atomic.Bool
	a := newApp(t, func(string, int) int {
		if accept.Load() {
			return http.StatusOK
		}
		return http.StatusUnprocessableEntity // dead at once
	})
	q := newQueue(t, startNATS(t))
	d := newDispatcher(t, callback.Config{URL: a.URL, Queue: q.ForDispatcher()})
	ctx := context.Background()
	for _, id := range []string{"r1", "r2", "r3"} {
		require.NoError(t, d.After(callback.WithEventID(ctx, id), 7, "message.send.after", []byte(`{}`)))
	}
	waitFor(t, "the dead letters", func() bool {
		n, err := q.DeadLetters(ctx)
		return err == nil && n == 3
	})
	base := serve(t, d, inspector.Options{DeadLetters: q, Authorize: func(*http.Request) bool { return true }})
	scoped := serve(t, d, inspector.Options{DeadLetters: q, Scope: func(*http.Request) (inspector.Scope, bool) {
		return inspector.Scope{Apps: []int{8}}, true
	}})
	closed := serve(t, d, inspector.Options{DeadLetters: q})

	var res callback.ReplayResult
	code := postJSON(t, base+"api/replay-matching", url.Values{"app": {"7"}, "dry_run": {"1"}}, &res)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, callback.ReplayResult{Matched: 3}, res)

	assert.Equal(t, http.StatusForbidden, post(t, closed+"api/replay-matching", url.Values{"app": {"7"}}, nil).StatusCode)
	assert.Equal(t, http.StatusNotFound, post(t, scoped+"api/replay-matching", url.Values{"app": {"7"}}, nil).StatusCode)
	assert.Equal(t, http.StatusBadRequest, post(t, base+"api/replay-matching", url.Values{}, nil).StatusCode)

	accept.Store(true)
	code = postJSON(t, base+"api/replay-matching", url.Values{"app": {"7"}, "rate": {"1000"}}, &res)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, callback.ReplayResult{Matched: 3, Replayed: 3}, res)
	waitFor(t, "the replays delivered", func() bool {
		return a.requests("r1") == 2 && a.requests("r2") == 2 && a.requests("r3") == 2
	})
}

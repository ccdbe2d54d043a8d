package natsqueue_test

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// TestReplayMatching: an app's dead letters are replayed by command,
// time and error, under their own IDs; a dry run counts and sends
// nothing; another app's are left.
func TestReplayMatching(t *testing.T) {
	srv := startServer(t, t.TempDir())
	var accept atomic.Bool
	a := newApp(t, func(hit, int) int {
		if accept.Load() {
			return http.StatusOK
		}
		return http.StatusBadRequest // dead at once
	})
	nc := connect(t, srv.ClientURL())
	n := newNode(t, nc, natsqueue.Options{}, callback.Config{URL: a.URL, RetrySchedule: short})
	ctx := context.Background()
	before := time.Now().Add(-time.Minute)
	send := func(app int, cmd string, i int) {
		id := cmd + "-" + strconv.Itoa(app) + "-" + strconv.Itoa(i)
		require.NoError(t, n.d.After(callback.WithEventID(ctx, id), app, cmd, body(i)))
	}
	for i := range 4 {
		send(7, "a", i)
		send(7, "b", 10+i)
		send(8, "a", 20+i)
	}
	waitFor(t, "12 dead letters", func() bool {
		c, err := n.q.DeadLetters(ctx)
		return err == nil && c == 12
	})
	hits := len(a.snapshot())

	for _, tt := range []struct {
		name string
		q    callback.ReplayQuery
		want int
	}{
		{"app", callback.ReplayQuery{AppID: 7}, 8},
		{"command", callback.ReplayQuery{AppID: 7, Command: "a"}, 4},
		{"error", callback.ReplayQuery{AppID: 7, ErrorContains: "status: 400"}, 8},
		{"other error", callback.ReplayQuery{AppID: 7, ErrorContains: "status: 503"}, 0},
		{"until", callback.ReplayQuery{AppID: 7, Until: before}, 0},
		{"since", callback.ReplayQuery{AppID: 7, Since: before}, 8},
		{"limit", callback.ReplayQuery{AppID: 7, Limit: 3}, 3},
	} {
		tt.q.DryRun = true
		res, err := n.q.ReplayMatching(ctx, tt.q)
		require.NoError(t, err, tt.name)
		assert.Equal(t, callback.ReplayResult{Matched: tt.want}, res, tt.name)
	}
	c, err := n.q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(12), c, "a dry run replays nothing")
	assert.Len(t, a.snapshot(), hits)

	accept.Store(true)
	res, err := n.q.ReplayMatching(ctx, callback.ReplayQuery{AppID: 7, Command: "a", Rate: 1000})
	require.NoError(t, err)
	assert.Equal(t, callback.ReplayResult{Matched: 4, Replayed: 4}, res)
	a.waitDelivered(t, 4, 30*time.Second)
	got := map[string]bool{}
	for _, h := range a.snapshot()[hits:] {
		got[h.id] = true
	}
	assert.Equal(t, map[string]bool{"a-7-0": true, "a-7-1": true, "a-7-2": true, "a-7-3": true}, got, "replayed under their own IDs")
	c, err = n.q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(8), c, "the others stay")
	left, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{ByApp: true, AppID: 8})
	require.NoError(t, err)
	assert.Len(t, left, 4, "another app's are left")

	_, err = n.q.ReplayMatching(ctx, callback.ReplayQuery{AppID: 7, Rate: -1})
	assert.ErrorIs(t, err, natsqueue.ErrInvalidOptions)
}

package natsqueue_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// TestSameIDTwoApps: two apps' message keys may be the same. App 1 and
// app 2 each give After the ID msg-1001: two events, both stored and
// delivered, each under the webhook-id its caller gave.
func TestSameIDTwoApps(t *testing.T) {
	srv := startServer(t, t.TempDir())
	a := newApp(t, func(hit, int) int { return http.StatusOK })
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, callback.Config{URL: a.URL, RetrySchedule: short})
	ctx := callback.WithEventID(context.Background(), "msg-1001")
	require.NoError(t, n.d.After(ctx, 1, "message.send.after", body(1)))
	require.NoError(t, n.d.After(ctx, 2, "message.send.after", body(2)))
	a.waitDelivered(t, 2, longWait)
	for _, h := range a.snapshot() {
		assert.Equal(t, "msg-1001", h.id, "the webhook-id is the caller's, as given")
	}
}

// TestSameIDTwoAppsDeadLetters: the same webhook-id dead-lettered in two
// apps is two dead letters, each found and replayed under its app alone.
func TestSameIDTwoAppsDeadLetters(t *testing.T) {
	srv := startServer(t, t.TempDir())
	var accept atomic.Bool
	a := newApp(t, func(hit, int) int {
		if accept.Load() {
			return http.StatusOK
		}
		return http.StatusBadRequest // not retried: dead at once
	})
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, callback.Config{URL: a.URL, RetrySchedule: short})
	ctx := callback.WithEventID(context.Background(), "msg-2002")
	require.NoError(t, n.d.After(ctx, 1, "message.send.after", body(1)))
	require.NoError(t, n.d.After(ctx, 2, "message.send.after", body(2)))
	waitFor(t, "two dead letters", func() bool {
		c, err := n.q.DeadLetters(ctx)
		return err == nil && c == 2
	})

	both, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{EventID: "msg-2002", Bodies: true})
	require.NoError(t, err)
	require.Len(t, both, 2, "one dead letter per app")
	assert.ElementsMatch(t, []int{1, 2}, []int{both[0].AppID, both[1].AppID})
	for app, want := range map[int]string{1: string(body(1)), 2: string(body(2))} {
		one, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{EventID: "msg-2002", ByApp: true, AppID: app, Bodies: true})
		require.NoError(t, err)
		require.Len(t, one, 1, "app %d", app)
		assert.Equal(t, app, one[0].AppID)
		assert.JSONEq(t, want, string(one[0].Body), "app %d's own event", app)
	}
	none, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{EventID: "msg-2002", ByApp: true, AppID: 3})
	require.NoError(t, err)
	assert.Empty(t, none)

	require.ErrorIs(t, n.q.ReplayOne(ctx, 3, "msg-2002"), natsqueue.ErrNotFound, "no app 3 event of that id")
	accept.Store(true)
	require.NoError(t, n.q.ReplayOne(ctx, 1, "msg-2002"))
	waitFor(t, "app 1's event delivered", func() bool { _, ok := a.deliveredAt(string(body(1))); return ok })
	require.ErrorIs(t, n.q.ReplayOne(ctx, 1, "msg-2002"), natsqueue.ErrNotFound, "app 1's was replayed")
	left, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{EventID: "msg-2002"})
	require.NoError(t, err)
	require.Len(t, left, 1)
	assert.Equal(t, 2, left[0].AppID, "app 2's dead letter stays where it was")
	_, replayed := a.deliveredAt(string(body(2)))
	assert.False(t, replayed, "app 2's event was not replayed")
}

// TestOldDeadLettersByApp: a dead letter stored by version 0.1.0, on
// DeadLetterSubject.app without the webhook-id's token, is still listed
// when the listing is by app.
func TestOldDeadLettersByApp(t *testing.T) {
	srv := startServer(t, t.TempDir())
	nc := connect(t, srv.ClientURL())
	a := newApp(t, func(hit, int) int { return http.StatusOK })
	n := newNode(t, nc, natsqueue.Options{}, callback.Config{URL: a.URL})
	ctx := context.Background()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	m := nats.NewMsg("callback.dead.7")
	m.Header.Set("Callback-Id", "old-1")
	m.Header.Set("Callback-App-Id", "7")
	m.Header.Set("Callback-Command", "message.send.after")
	m.Header.Set("Callback-Error", "callback: non-2xx status: 500")
	m.Data = []byte(`{}`)
	_, err = js.PublishMsg(ctx, m)
	require.NoError(t, err)

	for _, q := range []callback.DeadLetterQuery{{}, {ByApp: true, AppID: 7}} {
		got, err := n.q.ListDeadLetters(ctx, q)
		require.NoError(t, err)
		require.Len(t, got, 1, "query %+v", q)
		assert.Equal(t, "old-1", got[0].ID)
		assert.Equal(t, 7, got[0].AppID)
	}
	other, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{ByApp: true, AppID: 70})
	require.NoError(t, err)
	assert.Empty(t, other)
}

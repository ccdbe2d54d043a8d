package natsqueue_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// TestDisabledEndpointDeadLetters: on a durable queue, an endpoint that
// answers 410 Gone is disabled; its events go to the dead-letter store
// with ErrEndpointDisabled, the first unretried and the others unsent,
// and once enabled they are replayed under their own IDs.
func TestDisabledEndpointDeadLetters(t *testing.T) {
	srv := startServer(t, t.TempDir())
	var gone atomic.Bool
	gone.Store(true)
	a := newApp(t, func(hit, int) int {
		if gone.Load() {
			return http.StatusGone
		}
		return http.StatusOK
	})
	nc := connect(t, srv.ClientURL())
	n := newNode(t, nc, natsqueue.Options{}, callback.Config{URL: a.URL, RetrySchedule: short})
	ctx := context.Background()

	require.NoError(t, n.d.After(callback.WithEventID(ctx, "gone-0"), 1, "msg", body(0)))
	waitFor(t, "the 410's dead letter", func() bool {
		c, err := n.q.DeadLetters(ctx)
		return err == nil && c == 1
	})
	assert.Equal(t, []string{a.URL}, n.d.Stats().Disabled)
	for i := 1; i <= 3; i++ {
		require.NoError(t, n.d.After(callback.WithEventID(ctx, "gone-"+string(rune('0'+i))), 1, "msg", body(i)))
	}
	waitFor(t, "four dead letters", func() bool {
		c, err := n.q.DeadLetters(ctx)
		return err == nil && c == 4
	})
	assert.Len(t, a.snapshot(), 1, "one request: the 410, not retried")
	dls, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{})
	require.NoError(t, err)
	require.Len(t, dls, 4)
	for _, dl := range dls {
		assert.Contains(t, dl.Error, callback.ErrEndpointDisabled.Error(), "dead letter %s", dl.ID)
	}

	gone.Store(false)
	require.NoError(t, n.d.EnableEndpoint(a.URL))
	for _, dl := range dls {
		require.NoError(t, n.q.ReplayOne(ctx, dl.AppID, dl.ID))
	}
	a.waitDelivered(t, 4, 30*time.Second)
	for _, h := range a.snapshot()[1:] {
		assert.Contains(t, []string{"gone-0", "gone-1", "gone-2", "gone-3"}, h.id, "replayed under its own ID")
	}
}

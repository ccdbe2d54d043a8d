package natsqueue_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// TestRetriedAfterStoredOnce: a caller that retries After with its own
// event ID (as after a publish timeout) has the event stored once and
// delivered under that one ID.
func TestRetriedAfterStoredOnce(t *testing.T) {
	srv := startServer(t, t.TempDir())
	a := newApp(t, func(hit, int) int { return http.StatusOK })
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, callback.Config{URL: a.URL, Workers: 1, RetrySchedule: short})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	retried := callback.WithEventID(ctx, "im-msg-1")
	require.NoError(t, n.d.After(retried, 1, "message.send.after", body(1)))
	require.NoError(t, n.d.After(retried, 1, "message.send.after", body(1)), "the caller's retry")
	// A later event: with one worker and the stream's order, a second copy
	// of the first would be delivered before it.
	require.NoError(t, n.d.After(callback.WithEventID(ctx, "im-msg-2"), 1, "message.send.after", body(2)))
	a.waitDelivered(t, 2, 10*time.Second)

	ids := map[string]int{}
	for _, h := range a.snapshot() {
		ids[h.id]++
	}
	assert.Equal(t, map[string]int{"im-msg-1": 1, "im-msg-2": 1}, ids, "deliveries per webhook-id")
}

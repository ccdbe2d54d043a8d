package natsqueue_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// TestListAndReplayOne dead-letters five events of two apps, lists them
// with paging and filters, and replays two of them one by one: each is
// delivered once, a second replay finds nothing, and the others stay.
func TestListAndReplayOne(t *testing.T) {
	srv := startServer(t, t.TempDir())
	var mu sync.Mutex
	accepted := map[string]bool{}
	a := newApp(t, func(h hit, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(h.body, "poison") && !accepted[h.id] {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	accept := func(id string) {
		mu.Lock()
		defer mu.Unlock()
		accepted[id] = true
	}
	nc := connect(t, srv.ClientURL())
	n := newNode(t, nc, natsqueue.Options{}, callback.Config{URL: a.URL, RetrySchedule: short})
	ctx := context.Background()
	// IDs with the characters a NATS subject gives meaning to.
	events := []struct {
		app int
		id  string
	}{{7, "a.1"}, {8, "b*2"}, {7, "c>3"}, {8, "d4"}, {7, "e.5.>"}}
	for _, e := range events {
		require.NoError(t, n.d.After(callback.WithEventID(ctx, e.id), e.app, "message.send.after", []byte(`{"poison":"`+e.id+`"}`)))
	}
	waitFor(t, "five dead letters", func() bool {
		c, err := n.q.DeadLetters(ctx)
		return err == nil && c == 5
	})

	all, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{Bodies: true})
	require.NoError(t, err)
	require.Len(t, all, 5)
	seen := map[string]callback.DeadLetter{}
	for i, dl := range all {
		if i > 0 {
			assert.Greater(t, dl.Seq, all[i-1].Seq, "oldest first")
		}
		seen[dl.ID] = dl
		assert.Equal(t, "message.send.after", dl.Command)
		assert.Equal(t, 1, dl.Attempts, "got %d attempts, want 1", dl.Attempts)
		assert.Contains(t, dl.Error, "non-2xx status: 400")
		assert.False(t, dl.Time.IsZero())
		assert.False(t, dl.Queued.IsZero())
		assert.JSONEq(t, `{"poison":"`+dl.ID+`"}`, string(dl.Body))
	}
	for _, e := range events {
		require.Contains(t, seen, e.id)
		assert.Equal(t, e.app, seen[e.id].AppID)
	}

	// Pages of two, then the rest.
	var paged []string
	for q := (callback.DeadLetterQuery{Limit: 2}); ; {
		page, err := n.q.ListDeadLetters(ctx, q)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 2)
		if len(page) == 0 {
			break
		}
		for _, dl := range page {
			assert.Nil(t, dl.Body, "no body unless asked")
			paged = append(paged, dl.ID)
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
	assert.Len(t, paged, 5, "got %v over the pages", paged)
	// Each listing deletes the consumer it read with.
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	dead, err := js.Stream(ctx, "CALLBACK_DEAD")
	require.NoError(t, err)
	info, err := dead.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.State.Consumers, "consumers left on the dead-letter stream")

	app8, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{ByApp: true, AppID: 8})
	require.NoError(t, err)
	assert.Len(t, app8, 2)
	one, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{EventID: "c>3"})
	require.NoError(t, err)
	require.Len(t, one, 1)
	assert.Equal(t, 7, one[0].AppID)
	none, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{EventID: "c>3", ByApp: true, AppID: 8})
	require.NoError(t, err)
	assert.Empty(t, none)

	// Replay one: delivered once; a second replay finds nothing.
	accept("c>3")
	require.NoError(t, n.q.ReplayOne(ctx, 7, "c>3"))
	a.waitDelivered(t, 1, longWait)
	require.ErrorIs(t, n.q.ReplayOne(ctx, 7, "c>3"), natsqueue.ErrNotFound)
	require.ErrorIs(t, n.q.ReplayOne(ctx, 7, "never-stored"), callback.ErrNotFound)
	// Another replay, and once it is delivered the first has not come again.
	accept("a.1")
	require.NoError(t, n.q.ReplayOne(ctx, 7, "a.1"))
	a.waitDelivered(t, 2, longWait)
	count := map[string]int{}
	for _, h := range a.snapshot() {
		count[h.id]++
	}
	assert.Equal(t, 2, count["c>3"], "got %d requests for c>3, want the failed one and the replayed one", count["c>3"])
	assert.Equal(t, 2, count["a.1"])
	left, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{})
	require.NoError(t, err)
	assert.Len(t, left, 3)
}

// longWait bounds the waits of a test on a busy machine.
const longWait = 20 * time.Second

// TestAttemptLogDurable: with a durable queue, the attempt log tells an
// event's hand-outs as deliverOnce settles them: retried on
// RetrySchedule, then delivered.
func TestAttemptLogDurable(t *testing.T) {
	srv := startServer(t, t.TempDir())
	a := newApp(t, func(_ hit, seen int) int {
		if seen == 0 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, callback.Config{URL: a.URL, RetrySchedule: short})
	ctx := callback.WithEventID(context.Background(), "durable-1")
	require.NoError(t, n.d.After(ctx, 9, "message.send.after", []byte(`{}`)))
	a.waitDelivered(t, 1, longWait)
	q := callback.AttemptQuery{EventID: "durable-1", Kind: callback.KindAfter}
	waitFor(t, "the delivery's record", func() bool {
		got := n.d.Attempts(q)
		return len(got) > 0 && got[len(got)-1].Outcome == callback.OutcomeDelivered
	})
	var got []string
	records := n.d.Attempts(q)
	// After's record of acceptance may be numbered after the first
	// attempt's; its time is earlier.
	slices.SortStableFunc(records, func(a, b callback.Attempt) int { return a.Time.Compare(b.Time) })
	for _, at := range records {
		got = append(got, fmt.Sprintf("%s#%d:%d", at.Outcome, at.Attempt, at.Status))
	}
	assert.Equal(t, []string{"queued#0:0", "retrying#1:502", "delivered#2:200"}, got)
}

// TestAttemptLogPostponed: a durable event whose endpoint's breaker is
// open is handed back unsent, and the log says so.
func TestAttemptLogPostponed(t *testing.T) {
	srv := startServer(t, t.TempDir())
	a := newApp(t, func(hit, int) int { return http.StatusServiceUnavailable })
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, callback.Config{
		URL: a.URL, RetrySchedule: short,
		Breaker: callback.Breaker{ConsecutiveFailures: 1, Cooldown: time.Hour},
	})
	ctx := callback.WithEventID(context.Background(), "postponed-1")
	require.NoError(t, n.d.After(ctx, 9, "message.send.after", []byte(`{}`)))
	q := callback.AttemptQuery{EventID: "postponed-1", Outcome: callback.OutcomePostponed}
	waitFor(t, "a postponement", func() bool { return len(n.d.Attempts(q)) > 0 })
	p := n.d.Attempts(q)[0]
	assert.Equal(t, 2, p.Attempt, "the attempt it would have been")
	assert.Zero(t, p.Status)
	assert.Zero(t, p.Latency)
	first := n.d.Attempts(callback.AttemptQuery{EventID: "postponed-1", Outcome: callback.OutcomeRetrying})
	require.Len(t, first, 1)
	assert.Equal(t, 503, first[0].Status)
	assert.Equal(t, 1, a.delivered()+len(a.snapshot()), "one request only: the breaker holds the rest")
}

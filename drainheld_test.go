package callback_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// TestCloseDrainLimitHeldEvents: at Close's drain limit, the memory queue
// dead-letters the events it holds away from the workers too: those
// waiting for an hour-long retry and those parked behind an open breaker
// with an hour-long cooldown, beside a hung App backend. Every event is
// dead-lettered as ErrClosed, none is lost, and Close returns soon after
// the limit.
func TestCloseDrainLimitHeldEvents(t *testing.T) {
	const events = 12
	b := newBackend(t, hang)
	var dead deadLetters
	d, err := callback.New(callback.Config{
		URL: b.URL, Timeout: 200 * time.Millisecond, Workers: 2,
		Retries: 3, RetryWaitMin: time.Hour, RetryWaitMax: time.Hour,
		Breaker:      callback.Breaker{ConsecutiveFailures: 1, Cooldown: time.Hour},
		DrainTimeout: 300 * time.Millisecond, DeadLetter: dead.hook,
		Logger: discardLogger(),
	})
	require.NoError(t, err)
	for n := range events {
		require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)), "After %d", n)
	}
	// The first attempts time out and wait an hour for their retry; the
	// breaker opens and parks the rest of the lane for its cooldown.
	waitUntil(t, "the breaker to open", func() bool {
		s := d.Stats()
		return s.Breakers[b.URL] == "open" && s.ActiveAfter == 0
	})
	require.Zero(t, dead.len(), "nothing is dead-lettered before Close")
	require.Less(t, b.count(), events, "the open breaker holds events back")

	start := time.Now()
	err = d.Close(context.Background())
	took := time.Since(start)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "Close: got %v, want one wrapping context.DeadlineExceeded", err)
	assert.Less(t, took, 30*time.Second, "Close took %v with a 300 ms drain limit, against retries and a cooldown of an hour", took)
	evs, errs := dead.snapshot()
	require.Len(t, evs, events, "every event is dead-lettered")
	for i, err := range errs {
		assert.True(t, errors.Is(err, callback.ErrClosed), "dead letter %d: got %v, want ErrClosed", i, err)
	}
}

// TestQueueDepthCountsRetryWaits: an event waiting in the memory queue for
// its retry's time still counts in Stats.QueueDepth (and in QueueSize): it
// holds no worker, but it is not delivered yet.
func TestQueueDepthCountsRetryWaits(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusServiceUnavailable, `{}`))
	d, err := callback.New(callback.Config{
		URL: b.URL, Workers: 1, Retries: 3, RetryWaitMin: time.Hour, RetryWaitMax: time.Hour,
		Breaker: callback.Breaker{Disabled: true}, Logger: discardLogger(),
	})
	require.NoError(t, err)
	defer closeHeld(d)
	require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)))
	// Between the attempt's end (ActiveAfter back to 0) and its retry being
	// queued, the event is in neither count: wait for the retry itself.
	waitUntil(t, "the event waiting for its retry counted in QueueDepth", func() bool {
		s := d.Stats()
		return b.count() == 1 && s.ActiveAfter == 0 && s.QueueDepth == 1
	})
	assert.Positive(t, d.Stats().OldestQueued)
	assert.Equal(t, 1, b.count(), "the retry waits its hour")
}

// TestOldestQueuedSeesHeldEvents: Stats.OldestQueued is the age of the
// oldest event held, also when it waits for a retry or behind an open
// breaker while another app's events flow. (It was tracked from the event
// a worker took last, which hid an App backend's stuck events from the
// oldest_age alert whenever any other app was being served.)
func TestOldestQueuedSeesHeldEvents(t *testing.T) {
	down := newBackend(t, answerJSON(http.StatusServiceUnavailable, `{}`))
	up := newBackend(t, answerJSON(http.StatusOK, `{}`))
	apps := callback.ResolverFunc(func(_ context.Context, app int) (callback.Endpoint, error) {
		if app == 1 {
			return callback.Endpoint{URL: down.URL}, nil
		}
		return callback.Endpoint{URL: up.URL}, nil
	})
	d, err := callback.New(callback.Config{
		Resolver: apps, Workers: 2, Retries: 3, RetryWaitMin: time.Hour, RetryWaitMax: time.Hour,
		Breaker: callback.Breaker{Disabled: true}, Logger: discardLogger(),
	})
	require.NoError(t, err)
	defer closeHeld(d)
	require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)))
	waitUntil(t, "app 1's first attempt", func() bool { return down.count() == 1 && d.Stats().ActiveAfter == 0 })
	queued := time.Now() // app 1's event was queued before this

	// App 2's events are queued and delivered after it, one at a time, each
	// taken by a worker later than app 1's was.
	for i := range 5 {
		require.NoError(t, d.After(context.Background(), 2, "message.send.after", []byte(`{}`)))
		waitUntil(t, "app 2's event delivered", func() bool { return up.count() == i+1 && d.Stats().QueueDepth == 1 })
	}
	atLeast := time.Since(queued) // read before Stats: its age is at least this
	s := d.Stats()
	require.Equal(t, 1, s.QueueDepth, "app 1's event waits for its retry")
	assert.GreaterOrEqual(t, s.OldestQueued, atLeast, "the age of app 1's event, not of app 2's last")
}

// closeHeld closes d with a 200 ms drain limit: its held events (hour-long
// retries) are dead-lettered rather than waited for.
func closeHeld(d *callback.Dispatcher) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = d.Close(ctx)
}

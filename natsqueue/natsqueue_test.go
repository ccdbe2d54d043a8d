package natsqueue_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// short is a retry schedule for tests: seconds, not hours.
var short = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}

// TestCrash: node A accepts 10,000 events and its connection is dropped
// mid-delivery, without Close; node B, started on the same stream, delivers
// everything A did not, and an event delivered twice carries the same
// webhook-id both times.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 events through a crashed node: not in -short")
	}
	const events, beforeCrash = 10000, 1000
	srv := startServer(t, t.TempDir())
	// Node A's requests after its first beforeCrash are held until A has
	// crashed: they are in flight when its connection drops, so the App
	// gets them but JetStream never gets their acks.
	crashed := make(chan struct{})
	var crashOnce sync.Once
	crash := func() { crashOnce.Do(func() { close(crashed) }) }
	defer crash()
	var fromA atomic.Int32
	a := newApp(t, func(h hit, _ int) int {
		if h.node == "a" && fromA.Add(1) > beforeCrash {
			<-crashed
		}
		return http.StatusOK
	})
	opts := natsqueue.Options{AckWait: time.Second}

	ncA := connect(t, srv.ClientURL())
	nodeA := newNode(t, ncA, opts, callback.Config{URL: a.URL + "?node=a", Workers: 8, RetrySchedule: short})
	sendAll(t, nodeA.d, 0, events, 32)
	waitFor(t, "node A's deliveries to stall", func() bool { return fromA.Load() >= beforeCrash+8 })
	ncA.Close() // the crash: no Close, connection dropped mid-delivery
	crash()

	ncB := connect(t, srv.ClientURL())
	newNode(t, ncB, opts, callback.Config{URL: a.URL + "?node=b", Workers: 16, RetrySchedule: short})
	a.waitDelivered(t, events, 60*time.Second)

	ids := map[int]string{} // event number -> webhook-id
	fromB, dups := 0, 0
	for _, h := range a.snapshot() {
		n := number(t, h.body)
		if id, ok := ids[n]; ok {
			assert.Equal(t, id, h.id, "event %d delivered twice with different webhook-ids", n)
			dups++
		}
		ids[n] = h.id
		if h.node == "b" {
			fromB++
		}
	}
	assert.Len(t, ids, events, "got %d distinct events delivered, want %d", len(ids), events)
	assert.GreaterOrEqual(t, dups, 8, "got %d events delivered twice, want at least A's 8 in flight", dups)
	t.Logf("requests from A: %d, from B: %d; %d duplicates", fromA.Load(), fromB, dups)
	nodeA.close(t, time.Second) // reclaim A's goroutines; its connection is gone
}

// TestTwoNodes: two nodes consume the same stream at once; every event is
// delivered, and only an event whose attempt failed is delivered again.
func TestTwoNodes(t *testing.T) {
	const events = 2000
	srv := startServer(t, t.TempDir())
	// Every tenth event fails its first attempt.
	a := newApp(t, func(h hit, seen int) int {
		time.Sleep(200 * time.Microsecond)
		if seen == 0 && strings.HasSuffix(h.body, "0}") {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := func(name string) callback.Config {
		return callback.Config{URL: a.URL + "?node=" + name, Workers: 4, RetrySchedule: short}
	}
	nodeA := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg("a"))
	nodeB := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg("b"))
	var wg sync.WaitGroup
	wg.Go(func() { sendAll(t, nodeA.d, 0, events/2, 8) })
	wg.Go(func() { sendAll(t, nodeB.d, events/2, events, 8) })
	wg.Wait()
	a.waitDelivered(t, events, 30*time.Second)

	count := map[int]int{}
	byNode := map[string]int{}
	for _, h := range a.snapshot() {
		count[number(t, h.body)]++
		byNode[h.node]++
	}
	for n := range events {
		want := 1
		if n%10 == 0 {
			want = 2
		}
		assert.Equal(t, want, count[n], "event %d: got %d requests, want %d", n, count[n], want)
	}
	assert.Positive(t, byNode["a"], "node a delivered nothing")
	assert.Positive(t, byNode["b"], "node b delivered nothing")
	t.Logf("requests by node: %v", byNode)
}

// TestBackendDown: the App backend answers 503 for a while; every event is
// delivered once it is back, by the scheduled retries, and none is
// dead-lettered.
func TestBackendDown(t *testing.T) {
	const events = 200
	srv := startServer(t, t.TempDir())
	a, down := newDownApp(t)
	var dead atomic.Int32
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, callback.Config{
		URL: a.URL, RetrySchedule: short,
		// The breaker would hold the events back while the backend is
		// down (TestBackendDownBreaker); this test is about the schedule.
		Breaker:    callback.Breaker{Disabled: true},
		DeadLetter: func(callback.Event, error) { dead.Add(1) },
	})
	sendAll(t, n.d, 0, events, 8)
	// Every event must have failed once before the backend comes back, or
	// the test would not prove the retry: wait for that, however long a
	// loaded machine takes to make the first attempts.
	waitFor(t, "a failed first attempt of every event", func() bool {
		seen := map[string]bool{}
		for _, h := range a.snapshot() {
			seen[h.id] = true
		}
		return len(seen) == events
	})
	down.Store(false)
	a.waitDelivered(t, events, 20*time.Second)

	attempts := map[string]int{}
	for _, h := range a.snapshot() {
		attempts[h.id]++
	}
	for id, got := range attempts {
		assert.GreaterOrEqual(t, got, 2, "event %s: got %d attempts, want a failed one and a retry", id, got)
	}
	assert.Zero(t, dead.Load(), "got dead letters, want none")
	// Acks are not waited for (Delivery.Ack): the stream empties once the
	// server has processed them.
	waitFor(t, "an empty stream", func() bool {
		pending, err := n.q.Pending(context.Background())
		require.NoError(t, err)
		return pending == 0
	})
}

// TestBackendDownBreaker: with the endpoint's breaker on (the default), an
// App backend that is down opens it after a few failures; the events wait
// for it instead of using up their attempts, none is dead-lettered, and all
// are delivered once a probe succeeds. Close does not wait for the breaker:
// the events are safe in the stream.
func TestBackendDownBreaker(t *testing.T) {
	const events = 200
	srv := startServer(t, t.TempDir())
	a, down := newDownApp(t)
	var dead atomic.Int32
	cfg := callback.Config{
		URL: a.URL, RetrySchedule: short,
		Breaker:    callback.Breaker{Cooldown: 200 * time.Millisecond},
		DeadLetter: func(callback.Event, error) { dead.Add(1) },
	}
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg)
	sendAll(t, n.d, 0, events, 8)
	waitFor(t, "the breaker to open", func() bool {
		for _, state := range n.d.Stats().Breakers {
			if state == "open" {
				return true
			}
		}
		return false
	})
	failedWhileDown := len(a.snapshot())
	assert.Less(t, failedWhileDown, events, "the open breaker must hold events back, not send each one")

	start := time.Now()
	n.close(t, time.Minute)
	// Waiting for the breaker, Close would wait out its minute: the
	// backend stays down until after it.
	assert.Less(t, time.Since(start), 30*time.Second, "Close must not wait for the breaker")
	assert.Zero(t, dead.Load(), "got dead letters, want none")

	down.Store(false)
	newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg) // closed by the test's cleanup
	a.waitDelivered(t, events, 20*time.Second)
	assert.Zero(t, dead.Load(), "got dead letters, want none")
}

// newDownApp returns an App backend that answers 503 until down is set to
// false, then 200.
func newDownApp(t *testing.T) (*app, *atomic.Bool) {
	down := new(atomic.Bool)
	down.Store(true)
	a := newApp(t, func(hit, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	return a, down
}

// TestPoison: an event the App backend always refuses with 400 is
// dead-lettered after one attempt, kept in the dead-letter stream, and
// delivered with its webhook-id once replayed.
func TestPoison(t *testing.T) {
	srv := startServer(t, t.TempDir())
	var accept atomic.Bool
	a := newApp(t, func(h hit, _ int) int {
		if strings.Contains(h.body, "poison") && !accept.Load() {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	type letter struct {
		ev  callback.Event
		err error
	}
	letters := make(chan letter, 10)
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, callback.Config{
		URL: a.URL, RetrySchedule: short,
		DeadLetter: func(ev callback.Event, err error) { letters <- letter{ev, err} },
	})
	ctx := context.Background()
	require.NoError(t, n.d.After(ctx, 7, "message.send.after", []byte(`{"poison":true}`)))
	sendAll(t, n.d, 0, 10, 2)

	var l letter
	select {
	case l = <-letters:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no dead letter within 10 s")
	}
	assert.ErrorIs(t, l.err, callback.ErrStatus)
	assert.Equal(t, 1, l.ev.Attempts, "got %d attempts, want 1", l.ev.Attempts)
	assert.Equal(t, 7, l.ev.AppID)
	assert.JSONEq(t, `{"poison":true}`, string(l.ev.Body))
	a.waitDelivered(t, 10, 10*time.Second)

	waitFor(t, "the stream to empty", func() bool {
		p, err := n.q.Pending(ctx)
		return err == nil && p == 0
	})
	dl, err := n.q.DeadLetters(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, dl, "got %d dead letters stored, want 1", dl)

	accept.Store(true)
	replayed, err := n.q.Replay(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, replayed, "got %d replayed, want 1", replayed)
	a.waitDelivered(t, 11, 10*time.Second)
	var ids []string
	for _, h := range a.snapshot() {
		if strings.Contains(h.body, "poison") {
			ids = append(ids, h.id)
		}
	}
	assert.Equal(t, []string{l.ev.ID, l.ev.ID}, ids, "got webhook-ids %v, want the dead letter's on both requests", ids)
	dl, err = n.q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Zero(t, dl, "got %d dead letters after the replay, want 0", dl)
	select {
	case l := <-letters:
		assert.Fail(t, "dead-lettered again", "got %v", l.err)
	default:
	}
}

// TestRestart: with the embedded server, events accepted before a restart
// are delivered after it.
func TestRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("a server restart under load: not in -short")
	}
	const events = 500
	dir := t.TempDir()
	var up atomic.Bool
	a := newApp(t, func(hit, int) int {
		if !up.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	start := func() *callback.Dispatcher {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Events waiting for a retry when the server stopped come back
		// after AckWait once it restarts.
		q, err := natsqueue.Embedded(ctx, dir, natsqueue.Options{AckWait: 2 * time.Second})
		require.NoError(t, err)
		d, err := callback.New(callback.Config{
			URL: a.URL, Queue: q.ForDispatcher(), Logger: quiet, RetrySchedule: short,
			DeadLetter: func(ev callback.Event, err error) {
				t.Errorf("dead letter %s after %d attempts: %v", ev.ID, ev.Attempts, err)
			},
		})
		require.NoError(t, err)
		return d
	}

	d := start()
	sendAll(t, d, 0, events, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.Close(ctx))
	require.Zero(t, a.delivered(), "delivered before the restart; the test proves nothing")
	err := d.After(ctx, 1, "message.send.after", body(-1))
	require.ErrorIs(t, err, callback.ErrClosed)

	up.Store(true)
	d = start()
	a.waitDelivered(t, events, 20*time.Second)
	require.NoError(t, d.Close(ctx))
}

// TestRestartHandsBack: with the embedded server, the events a node pulled
// ahead and handed back at Close are delivered at once after a restart,
// not after AckWait.
func TestRestartHandsBack(t *testing.T) {
	const events = 300
	dir := t.TempDir()
	a := newApp(t, func(hit, int) int {
		time.Sleep(5 * time.Millisecond)
		return http.StatusOK
	})
	start := func() *callback.Dispatcher {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A handed-back event that the restart forgot would come back
		// only after forgottenAfter.
		q, err := natsqueue.Embedded(ctx, dir, natsqueue.Options{AckWait: forgottenAfter})
		require.NoError(t, err)
		d, err := callback.New(callback.Config{URL: a.URL, Queue: q.ForDispatcher(), Logger: quiet, Workers: 1, RetrySchedule: short})
		require.NoError(t, err)
		return d
	}
	d := start()
	sendAll(t, d, 0, events, 4)
	waitFor(t, "a few deliveries", func() bool { return a.delivered() >= 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.Close(ctx))
	require.Less(t, a.delivered(), events-64, "the node's prefetch was delivered before Close; the test proves nothing")

	d = start()
	a.waitDelivered(t, events, handedBackWithin)
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer closeCancel()
	require.NoError(t, d.Close(closeCtx))
}

// A node's Close hands back the events it pulled ahead, so another node,
// or the same one restarted, gets them at once; forgotten ones would come
// back only after AckWait. The tests that prove it set AckWait to
// forgottenAfter and wait handedBackWithin for every event: far less, yet
// long enough for a few hundred deliveries on a loaded machine under -race
// (15 s was not: 5 of 20 runs beside stress-ng --cpu 8 delivered every
// event, only later).
const (
	forgottenAfter   = 10 * time.Minute
	handedBackWithin = time.Minute
)

// TestClose: Close finishes the attempts in flight and hands back the rest;
// After then fails with ErrClosed; a second node delivers what is left.
func TestClose(t *testing.T) {
	const events = 300
	srv := startServer(t, t.TempDir())
	a := newApp(t, func(hit, int) int {
		time.Sleep(2 * time.Millisecond)
		return http.StatusOK
	})
	opts := natsqueue.Options{AckWait: forgottenAfter}
	first := newNode(t, connect(t, srv.ClientURL()), opts, callback.Config{URL: a.URL, Workers: 2, RetrySchedule: short})
	sendAll(t, first.d, 0, events, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, first.d.Close(ctx))
	require.Less(t, a.delivered(), events, "all delivered before Close; the test proves nothing")
	require.True(t, errors.Is(first.d.After(ctx, 1, "x", body(0)), callback.ErrClosed), "After after Close: want ErrClosed")

	newNode(t, connect(t, srv.ClientURL()), opts, callback.Config{URL: a.URL, RetrySchedule: short})
	a.waitDelivered(t, events, handedBackWithin) // Close handed back what it held
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, what, 30*time.Second, cond) // ends a hang; a loaded machine is slow, not stuck
}

// waitWithin polls cond for up to within.
func waitWithin(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting for "+what, "after %v", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSlowAttempt: an attempt longer than AckWait keeps its event with
// in-progress acks: the other node does not get it meanwhile.
func TestSlowAttempt(t *testing.T) {
	srv := startServer(t, t.TempDir())
	a := newApp(t, func(hit, int) int {
		time.Sleep(1500 * time.Millisecond)
		return http.StatusOK
	})
	opts := natsqueue.Options{AckWait: 500 * time.Millisecond}
	cfg := callback.Config{URL: a.URL, Timeout: 5 * time.Second, RetrySchedule: short}
	first := newNode(t, connect(t, srv.ClientURL()), opts, cfg)
	newNode(t, connect(t, srv.ClientURL()), opts, cfg)
	sendAll(t, first.d, 0, 3, 1)
	a.waitDelivered(t, 3, 10*time.Second)
	time.Sleep(time.Second) // a redelivery would arrive by now
	hits := a.snapshot()
	assert.Len(t, hits, 3, "got %d requests for 3 events, want 3: an event was handed to the other node mid-attempt", len(hits))
}

// TestCloseDeadline: an attempt cut short by Close's deadline goes back to
// the queue, not to the dead-letter hook, and the next node delivers it.
func TestCloseDeadline(t *testing.T) {
	srv := startServer(t, t.TempDir())
	var slow atomic.Bool
	slow.Store(true)
	a := newApp(t, func(hit, int) int {
		if slow.Load() {
			time.Sleep(1500 * time.Millisecond)
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	var dead atomic.Int32
	cfg := callback.Config{
		URL: a.URL, Timeout: 10 * time.Second, RetrySchedule: short,
		DeadLetter: func(callback.Event, error) { dead.Add(1) },
	}
	// Two workers: most events wait in the node's prefetch buffer when
	// Close gives up, and must be handed back too.
	cfg.Workers = 2
	first := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg)
	cfg.Workers = 0
	sendAll(t, first.d, 0, 40, 1)
	waitFor(t, "attempts in flight", func() bool { return len(a.snapshot()) > 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := first.d.Close(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(began), 2*time.Second, "Close took %v, want about its 200 ms deadline", time.Since(began))
	assert.Zero(t, dead.Load(), "got dead letters at Close's deadline, want the events handed back")

	slow.Store(false)
	newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg)
	a.waitDelivered(t, 40, 10*time.Second) // well within AckWait (30 s)
}

// TestPublishFails: when JetStream does not acknowledge, After returns an
// error wrapping ErrPublish, bounded by PublishTimeout and by ctx.
func TestPublishFails(t *testing.T) {
	srv := startServer(t, t.TempDir())
	a := newApp(t, nil)
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{PublishTimeout: 300 * time.Millisecond}, callback.Config{URL: a.URL})
	shutdown(srv)

	tests := []struct {
		name  string
		bound time.Duration // ctx's deadline, 0 for none
	}{
		{"PublishTimeout", 0},
		{"ctx", 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.bound > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.bound)
				defer cancel()
			}
			began := time.Now()
			err := n.d.After(ctx, 1, "message.send.after", body(1))
			assert.ErrorIs(t, err, natsqueue.ErrPublish, "got %v, want ErrPublish", err)
			assert.Less(t, time.Since(began), 2*time.Second, "After took %v, want about 300 ms or less", time.Since(began))
		})
	}
	n.close(t, time.Second)
}

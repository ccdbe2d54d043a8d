package callback_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// jsonQueue is a Queue that keeps events as JSON, as a durable queue
// does: only what Event exports crosses it. Get waits for open, so a test
// can change things between After and delivery.
type jsonQueue struct {
	open    chan struct{}
	stopped chan struct{}
	stop    sync.Once
	items   chan []byte

	mu      sync.Mutex
	settled []string // "ack", "retry" or "dead: <reason>", in order
}

func newJSONQueue() *jsonQueue {
	return &jsonQueue{open: make(chan struct{}), stopped: make(chan struct{}), items: make(chan []byte, 16)}
}

func (q *jsonQueue) Put(_ context.Context, ev callback.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	select {
	case <-q.stopped:
		return callback.ErrClosed
	case q.items <- b:
		return nil
	}
}

func (q *jsonQueue) Get(ctx context.Context) (callback.Delivery, error) {
	select {
	case <-q.open:
	case <-q.stopped:
		return nil, callback.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case b := <-q.items:
		var ev callback.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			return nil, err
		}
		return &jsonDelivery{q: q, ev: ev}, nil
	case <-q.stopped:
		return nil, callback.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (q *jsonQueue) Stop()        { q.stop.Do(func() { close(q.stopped) }) }
func (q *jsonQueue) Close() error { return nil }

func (q *jsonQueue) settle(s string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.settled = append(q.settled, s)
}

func (q *jsonQueue) outcomes() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.settled...)
}

type jsonDelivery struct {
	q  *jsonQueue
	ev callback.Event
}

func (d *jsonDelivery) Event() callback.Event { return d.ev }

func (d *jsonDelivery) Ack(context.Context) error {
	d.q.settle("ack")
	return nil
}

func (d *jsonDelivery) Retry(context.Context, time.Duration) error {
	d.q.settle("retry")
	return nil
}

func (d *jsonDelivery) DeadLetter(_ context.Context, reason error) error {
	d.q.settle("dead: " + reason.Error())
	return nil
}

// TestResolverWithQueueResolvesAtDelivery: an event that went through a
// Queue is resolved again when handed out, so the app's endpoint at
// delivery time is the one that counts.
func TestResolverWithQueueResolvesAtDelivery(t *testing.T) {
	a := newBackend(t, answerJSON(200, okSeed))
	b := newBackend(t, answerJSON(200, okSeed))
	tests := []struct {
		name   string
		change func(apps *appTable)
		want   string // the outcome settled
		toB    int    // requests b gets
	}{
		{"moved to another URL", func(apps *appTable) { apps.set(7, callback.Endpoint{URL: b.URL}) }, "ack", 1},
		{"deleted: dead letter", func(apps *appTable) {
			apps.mu.Lock()
			delete(apps.apps, 7)
			apps.mu.Unlock()
		}, "dead: ", 0},
		{"store down: retried later", func(apps *appTable) { apps.fail(errors.New("store down")) }, "retry", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apps := newAppTable(map[int]callback.Endpoint{7: {URL: a.URL}})
			q := newJSONQueue()
			d, err := callback.New(callback.Config{Resolver: apps, Queue: q, Workers: 1, Logger: discardLogger(),
				RetrySchedule: []time.Duration{time.Hour}})
			require.NoError(t, err)
			fromA, fromB := a.count(), b.count()

			require.NoError(t, d.After(context.Background(), 7, "cmd", []byte(`{}`)), "resolved at After")
			tt.change(apps)
			close(q.open)
			require.Eventually(t, func() bool { return len(q.outcomes()) == 1 }, 5*time.Second, 5*time.Millisecond)
			require.NoError(t, d.Close(context.Background()))

			got := q.outcomes()[0]
			assert.Contains(t, got, tt.want, "settled as")
			if tt.want == "dead: " {
				assert.Contains(t, got, callback.ErrUnknownApp.Error())
			}
			assert.Equal(t, fromA, a.count(), "requests to the URL of After's time")
			assert.Equal(t, fromB+tt.toB, b.count(), "requests to the URL of delivery time")
		})
	}
}

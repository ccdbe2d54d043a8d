package callback_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcallback/callback"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRetrySchedule: a negative wait is refused at New; nil and empty are
// accepted.
func TestRetrySchedule(t *testing.T) {
	tests := []struct {
		name     string
		schedule []time.Duration
		wantErr  error
	}{
		{"nil means the default", nil, nil},
		{"empty means one attempt", []time.Duration{}, nil},
		{"short", []time.Duration{time.Millisecond, time.Second}, nil},
		{"negative wait", []time.Duration{time.Second, -time.Second}, callback.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := callback.New(callback.Config{URL: "http://127.0.0.1:1/callback", RetrySchedule: tt.schedule})
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr, "got %v, want %v", err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NoError(t, d.Close(context.Background()))
		})
	}
	assert.Len(t, callback.DefaultRetrySchedule(), 7, "Svix's schedule has 7 waits")
}

// TestMemoryQueue: with no Config.Queue, After queues in memory: full is
// ErrQueueFull at once, Close delivers what is queued, After after Close is
// ErrClosed, and Close's deadline dead-letters what is left with ErrClosed.
func TestMemoryQueue(t *testing.T) {
	release := make(chan struct{})
	gate := make(chan struct{})
	var got, arrived atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		switch r.URL.Query().Get("appId") {
		case "2":
			<-release // appId 2 hangs until the test ends
		case "3":
			<-gate // appId 3 waits for the test
		}
		got.Add(1)
		_, _ = w.Write([]byte(`{"code":200}`))
	}))
	defer app.Close()
	defer close(release)
	var mu sync.Mutex
	var dead []error
	ctx := context.Background()

	t.Run("full, then drained by Close", func(t *testing.T) {
		d, err := callback.New(callback.Config{URL: app.URL, Workers: 1, QueueSize: 2, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		// The only worker is held by the first event; two more fill the
		// queue.
		require.NoError(t, d.After(ctx, 3, "a", []byte(`{}`)))
		require.Eventually(t, func() bool { return arrived.Load() > 0 }, 10*time.Second, time.Millisecond, "the worker must be sending")
		for i := range 4 {
			err := d.After(ctx, 3, "a", []byte(`{}`))
			if i < 2 {
				require.NoError(t, err, "event %d", i)
			} else {
				require.ErrorIs(t, err, callback.ErrQueueFull, "event %d: got %v, want ErrQueueFull", i, err)
			}
		}
		close(gate)
		require.NoError(t, d.Close(ctx))
		assert.EqualValues(t, 3, got.Load(), "got %d delivered, want the 3 accepted", got.Load())
		assert.ErrorIs(t, d.After(ctx, 1, "a", []byte(`{}`)), callback.ErrClosed)
	})

	t.Run("Close's deadline dead-letters", func(t *testing.T) {
		d, err := callback.New(callback.Config{
			URL: app.URL, Workers: 1, Logger: slog.New(slog.DiscardHandler),
			Timeout: time.Hour, // the held attempts end by Close's deadline only
			DeadLetter: func(_ callback.Event, err error) {
				mu.Lock()
				dead = append(dead, err)
				mu.Unlock()
			},
		})
		require.NoError(t, err)
		for range 3 {
			require.NoError(t, d.After(ctx, 2, "a", []byte(`{}`)))
		}
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		began := time.Now()
		assert.ErrorIs(t, d.Close(ctx), context.DeadlineExceeded)
		assert.Less(t, time.Since(began), 20*time.Second, "Close took %v, want about 200 ms, not the attempts' hour", time.Since(began))
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, dead, 3, "got %d dead letters, want 3", len(dead))
		for _, err := range dead {
			assert.ErrorIs(t, err, callback.ErrClosed)
		}
	})
}

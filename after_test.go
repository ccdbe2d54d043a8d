package callback_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
)

// fastRetries makes After retry quickly in tests, with no breaker or rate
// limit to slow down the failures they provoke on purpose.
func fastRetries(cfg callback.Config) callback.Config {
	cfg.RetryWaitMin = time.Millisecond
	cfg.RetryWaitMax = 5 * time.Millisecond
	cfg.Breaker.Disabled = true
	cfg.AfterLimit.Rate = -1
	return cfg
}

func TestAfterDeliversThroughTransient503s(t *testing.T) {
	const events = 3000
	// Each event's first two attempts get a 503; the third succeeds.
	var mu sync.Mutex
	tries := map[string]int{}     // webhook-id -> attempts seen
	delivered := map[string]int{} // event number -> its webhook-id's 2xx count
	ids := map[string]string{}    // event number -> webhook-id
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Webhook-Id")
		n := r.URL.Query().Get("appId")
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := ids[n]; ok && prev != id {
			t.Errorf("event %s: webhook-id changed from %s to %s between attempts", n, prev, id)
		}
		ids[n] = id
		tries[id]++
		if tries[id] < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		delivered[n]++
		w.WriteHeader(http.StatusOK)
	})
	var dead deadLetters
	// The 9,000 requests take seconds under -race on a loaded machine:
	// neither an attempt's timeout nor the drain's may end them early (an
	// attempt timed out after the backend counted it would be a fourth).
	// Both are bounds against a real hang only.
	d, _ := newDispatcher(t, fastRetries(callback.Config{URL: b.URL, DeadLetter: dead.hook, QueueSize: events, Timeout: time.Minute}))

	for i := range events {
		require.NoError(t, d.After(context.Background(), i, "message.send.after", []byte(`{"n":`+strconv.Itoa(i)+`}`)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	require.NoError(t, d.Close(ctx), "Close must drain every queued event")

	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, delivered, events, "every event must be delivered")
	for n, c := range delivered {
		assert.Equal(t, 1, c, "event %s delivered %d times", n, c)
	}
	for id, c := range tries {
		assert.Equal(t, 3, c, "event %s: attempts", id)
	}
	assert.Equal(t, 0, dead.len(), "nothing must be dead-lettered")
}

func TestAfterRetryPolicy(t *testing.T) {
	tests := []struct {
		status   int
		attempts int // with Retries: 2
		retried  bool
	}{
		{http.StatusBadRequest, 1, false},
		{http.StatusUnauthorized, 1, false},
		{http.StatusNotFound, 1, false},
		{http.StatusGone, 1, false},
		{http.StatusFound, 1, false},
		{http.StatusNotImplemented, 1, false},
		{http.StatusRequestTimeout, 3, true},
		{http.StatusTooManyRequests, 3, true},
		{http.StatusInternalServerError, 3, true},
		{http.StatusBadGateway, 3, true},
		{http.StatusServiceUnavailable, 3, true},
		{http.StatusGatewayTimeout, 3, true},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.status == http.StatusFound {
					w.Header().Set("Location", "/other")
				}
				w.WriteHeader(tt.status)
			})
			var dead deadLetters
			d, logs := newDispatcher(t, fastRetries(callback.Config{URL: b.URL, Retries: 2, DeadLetter: dead.hook}))
			require.NoError(t, d.After(context.Background(), 5, "friend.add.after", []byte(`{"secret":"do-not-log-me"}`)))
			require.NoError(t, d.Close(context.Background()))

			assert.Equal(t, tt.attempts, b.count(), "requests sent")
			evs, errs := dead.snapshot()
			require.Len(t, evs, 1, "the undelivered event must be dead-lettered")
			assert.Equal(t, tt.attempts, evs[0].Attempts)
			assert.Equal(t, 5, evs[0].AppID)
			assert.Equal(t, "friend.add.after", evs[0].Command)
			assert.JSONEq(t, `{"secret":"do-not-log-me"}`, string(evs[0].Body))
			assert.Equal(t, b.requests()[0].Header.Get("Webhook-Id"), evs[0].ID)
			if tt.status == http.StatusFound {
				assert.ErrorIs(t, errs[0], callback.ErrRedirect)
			} else {
				assert.ErrorIs(t, errs[0], callback.ErrStatus)
				assert.Contains(t, errs[0].Error(), strconv.Itoa(tt.status))
			}
			assert.Contains(t, logs.String(), `"webhook_id":"`+evs[0].ID+`"`)
			assert.NotContains(t, logs.String(), "do-not-log-me")
		})
	}
}

func TestAfterRetriesTransportErrorsThenDeadLetters(t *testing.T) {
	var dead deadLetters
	d, logs := newDispatcher(t, fastRetries(callback.Config{URL: "http://127.0.0.1:1/cb", Retries: 3, DeadLetter: dead.hook}))
	require.NoError(t, d.After(context.Background(), 1, "group.create.after", []byte(`{}`)))
	require.NoError(t, d.Close(context.Background()))
	evs, errs := dead.snapshot()
	require.Len(t, evs, 1)
	assert.Equal(t, 4, evs[0].Attempts, "first attempt plus 3 retries")
	assert.Contains(t, errs[0].Error(), "refused")
	assert.NotContains(t, errs[0].Error(), "appId=", "errors carry URLs without their query")
	assert.Contains(t, logs.String(), "after event not delivered")
}

func TestAfterAttemptTimeoutIsRetried(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	srv.On("message.send.after", callbacktest.Hang(), callbacktest.Allow()) // the first attempt hangs past its timeout
	var dead deadLetters
	// The timeout must also let the second attempt's answer arrive on a
	// loaded machine; 200 ms left little room for it.
	d, _ := newDispatcher(t, fastRetries(callback.Config{URL: srv.URL, Timeout: time.Second, DeadLetter: dead.hook}))
	require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)))
	require.NoError(t, d.Close(context.Background()))
	assert.Len(t, srv.Calls(), 2, "attempts")
	assert.Equal(t, 0, dead.len())
}

func TestAfterHonoursRetryAfterWithCap(t *testing.T) {
	var calls atomic.Int32
	var first, second time.Time
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "3600") // an hour: must be capped
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		second = time.Now()
		w.WriteHeader(http.StatusOK)
	})
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 300 * time.Millisecond})
	require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)))
	require.NoError(t, d.Close(context.Background()))
	require.Equal(t, int32(2), calls.Load())
	wait := second.Sub(first)
	assert.GreaterOrEqual(t, wait, 250*time.Millisecond, "Retry-After must be honoured up to the cap")
	// An hour uncapped; 300 ms capped. The bound is far from both, so a
	// loaded machine cannot reach it.
	assert.Less(t, wait, 20*time.Second, "Retry-After must be capped at RetryWaitMax")
}

func TestAfterQueueFullNeverBlocks(t *testing.T) {
	b := newBackend(t, hang)
	var dead deadLetters
	d, err := callback.New(callback.Config{URL: b.URL, Workers: 2, QueueSize: 10, Timeout: time.Hour, DeadLetter: dead.hook, Logger: discardLogger()})
	require.NoError(t, err)

	accepted, full := 0, 0
	start := time.Now()
	for range 100 {
		switch err := d.After(context.Background(), 1, "message.send.after", []byte(`{}`)); {
		case err == nil:
			accepted++
		case assert.ErrorIs(t, err, callback.ErrQueueFull):
			full++
		}
	}
	// Blocked on the hung backend (Timeout: an hour), After would not return.
	assert.Less(t, time.Since(start), 30*time.Second, "After must never wait for a hung backend")
	assert.LessOrEqual(t, accepted, 12, "queue of 10 plus one event per worker")
	assert.GreaterOrEqual(t, accepted, 10)
	assert.Equal(t, 100, accepted+full)

	// Close at its deadline: cancels the hung attempts, dead-letters all.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = d.Close(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 30*time.Second, "Close must return at its deadline, not wait for the hour-long attempts")
	evs, errs := dead.snapshot()
	assert.Len(t, evs, accepted, "every accepted event must be dead-lettered")
	for _, e := range errs {
		assert.ErrorIs(t, e, callback.ErrClosed)
	}
	// goleak (TestMain) checks that no worker outlived Close.
}

func TestAfterRejectsBadInput(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		command string
		body    string
		want    error
	}{
		{"not JSON", context.Background(), "message.send.after", `{"a":`, callback.ErrInvalidBody},
		{"empty body", context.Background(), "message.send.after", ``, callback.ErrInvalidBody},
		{"empty command", context.Background(), "", `{}`, callback.ErrInvalidCommand},
		{"ctx already done", canceled, "message.send.after", `{}`, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, d.After(tt.ctx, 1, tt.command, []byte(tt.body)), tt.want)
		})
	}
	require.NoError(t, d.Close(context.Background()))
	assert.Equal(t, 0, b.count(), "rejected events must not be sent")
}

func TestAfterDisabledSendsNothing(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, Commands: map[string]callback.Rule{"user.modify.after": {Disabled: true}}})
	assert.NoError(t, d.After(context.Background(), 1, "user.modify.after", []byte(`{}`)))
	require.NoError(t, d.Close(context.Background()))
	assert.Equal(t, 0, b.count())
}

func TestAfterCopiesBody(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	body := []byte(`{"n":1}`)
	require.NoError(t, d.After(context.Background(), 1, "message.send.after", body))
	copy(body, `{"n":2}`) // the caller reuses its buffer at once
	require.NoError(t, d.Close(context.Background()))
	require.Len(t, b.requests(), 1)
	assert.Equal(t, `{"n":1}`, string(b.requests()[0].Body))
}

func TestAfterAfterClose(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	require.NoError(t, d.Close(context.Background()))
	assert.ErrorIs(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)), callback.ErrClosed)
	assert.NoError(t, d.Close(context.Background()), "a second Close is safe")
}

func TestDeadLetterPanicIsLoggedNotFatal(t *testing.T) {
	d, logs := newDispatcher(t, fastRetries(callback.Config{
		URL: "http://127.0.0.1:1/", Retries: -1,
		DeadLetter: func(callback.Event, error) { panic("hook bug") },
	}))
	for range 3 {
		require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)))
	}
	require.NoError(t, d.Close(context.Background()), "workers must survive a panicking hook")
	assert.Contains(t, logs.String(), "hook bug")
	assert.Contains(t, logs.String(), "DeadLetter hook panicked")
}

func TestConcurrentBeforeAndAfter(t *testing.T) {
	var afters atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("command") == "message.send.after" {
			afters.Add(1)
			w.WriteHeader(http.StatusOK)
			return
		}
		answerJSON(200, `{"code":200,"msg":"ok"}`)(w, r)
	})
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, QueueSize: 100000, AfterLimit: callback.AfterLimit{Rate: -1}})

	const goroutines, each = 32, 100
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				body := []byte(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i))
				if r := d.Before(context.Background(), g, "message.send.before", body); r.Err != nil || !r.OK() {
					failed.Add(1)
				}
				if err := d.After(context.Background(), g, "message.send.after", body); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, d.Close(context.Background()))
	assert.Equal(t, int64(0), failed.Load())
	assert.Equal(t, int64(goroutines*each), afters.Load(), "every After must be delivered")
	// At most 48 requests are in flight (32 callers, 16 workers), the
	// most they hold at once by construction. The connections accepted
	// depend on scheduling (Go's transport may dial while a finished
	// connection is on its way back to the pool, and abandon that dial),
	// so their bound is far from both a pool that keeps them (tens) and
	// one per call (6,400).
	assert.LessOrEqual(t, b.busy.peak.Load(), int64(goroutines+16), "requests in flight at once")
	assert.LessOrEqual(t, b.conns.Load(), int64(2*goroutines*each/10), "the pool must keep connections, not open one per call")
}

package callback_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// switchable is an App backend whose behaviour a test can change: it hangs
// (accepts the request and never answers), fails with a status, or allows.
type switchable struct {
	status atomic.Int64 // 0: hang; otherwise the status to answer
}

func (s *switchable) handler(w http.ResponseWriter, r *http.Request) {
	switch st := int(s.status.Load()); st {
	case 0:
		<-r.Context().Done()
	case http.StatusOK:
		answerJSON(200, `{"code":200,"msg":"ok"}`)(w, r)
	default:
		w.WriteHeader(st)
	}
}

// runBefore calls Before n times from c goroutines and returns the responses.
func runBefore(d *callback.Dispatcher, n, c int) []callback.Response {
	return runBeforeCtx(context.Background(), d, n, c)
}

// runBeforeCtx is runBefore with each call's ctx.
func runBeforeCtx(ctx context.Context, d *callback.Dispatcher, n, c int) []callback.Response {
	out := make([]callback.Response, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				out[i] = d.Before(ctx, i, "message.send.before", []byte(`{"n":`+strconv.Itoa(i)+`}`))
			}
		})
	}
	wg.Wait()
	return out
}

func TestBreakerHungBackend(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the other tests
	// Without a breaker, 3,000 calls at concurrency 64 against a backend
	// that never answers take 3000/64 x 2 s = 94 s.
	var s switchable
	b := newBackend(t, s.handler)
	d, logs := newDispatcher(t, callback.Config{
		URL:     b.URL + "/callback",
		Breaker: callback.Breaker{Cooldown: 500 * time.Millisecond}, // default Timeout: 2 s
	})

	start := time.Now()
	got := runBefore(d, 3000, 64)
	// The time taken depends on the machine; what keeps it short is that
	// most calls are refused at once, asserted below.
	t.Logf("3,000 calls in %v", time.Since(start).Round(time.Millisecond))
	open := 0
	for i, r := range got {
		require.Error(t, r.Err, "call %d: a hung backend cannot answer", i)
		require.True(t, r.OK(), "call %d must fail open", i)
		if errors.Is(r.Err, callback.ErrBreakerOpen) {
			open++
		}
	}
	assert.Greater(t, open, 2500, "most calls must be refused by the open breaker at once")
	assert.Less(t, b.count(), 500, "the hung backend must see few requests, not 3,000")
	assert.Contains(t, logs.String(), "circuit breaker open", "the opening is logged")

	// The backend recovers: after a probe succeeds, calls flow again.
	s.status.Store(http.StatusOK)
	require.Eventually(t, func() bool {
		return d.Before(context.Background(), 1, "message.send.before", []byte(`{}`)).Err == nil
	}, 30*time.Second, 20*time.Millisecond, "a probe must close the breaker once the backend answers")
	for i, r := range runBefore(d, 500, 64) {
		require.NoError(t, r.Err, "call %d after recovery", i)
	}
	assert.Contains(t, logs.String(), "circuit breaker closed")
}

func TestBreakerOpens(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int // answered in turn, cyclically
		breaker  callback.Breaker
		maxSent  int // requests the backend may see from 100 calls
	}{
		{"5 consecutive 503s", []int{503}, callback.Breaker{}, 5},
		{"consecutive 500s at a custom threshold", []int{500}, callback.Breaker{ConsecutiveFailures: 2}, 2},
		{"429 and 408 count", []int{429, 408}, callback.Breaker{}, 5},
		// Two failures in three never make 5 in a row; the ratio (>= 50% of
		// >= 20 calls) opens the breaker.
		{"failure ratio", []int{200, 503, 503}, callback.Breaker{}, 20},
		{"custom ratio and minimum", []int{200, 200, 503}, callback.Breaker{FailureRatio: 0.3, MinCalls: 9}, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				st := tt.statuses[int(n.Add(1)-1)%len(tt.statuses)]
				if st == 200 {
					answerJSON(200, `{"code":200}`)(w, r)
					return
				}
				w.WriteHeader(st)
			})
			tt.breaker.Cooldown = time.Minute
			rules := map[string]callback.Rule{"friend.add.before": {FailClosed: true}}
			d, _ := newDispatcher(t, callback.Config{URL: b.URL, Breaker: tt.breaker, Commands: rules})

			for range 100 {
				d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
			}
			assert.Equal(t, tt.maxSent, b.count(), "requests sent before the breaker opened")

			r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
			assert.ErrorIs(t, r.Err, callback.ErrBreakerOpen)
			assert.Equal(t, callback.Allow, r.Action, "fail open by default")
			r = d.Before(context.Background(), 1, "friend.add.before", []byte(`{}`))
			assert.ErrorIs(t, r.Err, callback.ErrBreakerOpen)
			assert.Equal(t, callback.Deny, r.Action, "a FailClosed rule denies while open")
			assert.Equal(t, 503, r.Code)
		})
	}
}

func TestBreakerIgnoresWhatIsNotTheEndpointsFault(t *testing.T) {
	tests := []struct {
		name string
		call func(d *callback.Dispatcher) callback.Response
	}{
		{"caller's ctx already cancelled", func(d *callback.Dispatcher) callback.Response {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return d.Before(ctx, 1, "message.send.before", []byte(`{}`))
		}},
		{"caller's deadline shorter than the timeout", func(d *callback.Dispatcher) callback.Response {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
			defer cancel()
			return d.Before(ctx, 1, "message.send.before", []byte(`{}`))
		}},
		{"invalid body", func(d *callback.Dispatcher) callback.Response {
			return d.Before(context.Background(), 1, "message.send.before", []byte(`{not json`))
		}},
		{"empty command", func(d *callback.Dispatcher) callback.Response {
			return d.Before(context.Background(), 1, "", []byte(`{}`))
		}},
		{"disabled command", func(d *callback.Dispatcher) callback.Response {
			return d.Before(context.Background(), 1, "user.off.before", []byte(`{}`))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s switchable // hangs
			b := newBackend(t, s.handler)
			d, _ := newDispatcher(t, callback.Config{
				URL:      b.URL,
				Timeout:  time.Minute,
				Breaker:  callback.Breaker{ConsecutiveFailures: 1, MinCalls: 1, Cooldown: time.Minute},
				Commands: map[string]callback.Rule{"user.off.before": {Disabled: true}},
			})
			for range 10 {
				r := tt.call(d)
				assert.NotErrorIs(t, r.Err, callback.ErrBreakerOpen)
			}
			s.status.Store(http.StatusOK)
			r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
			assert.NoError(t, r.Err, "the breaker must still be closed (one failure would open it)")
		})
	}

	t.Run("a 4xx answer", func(t *testing.T) {
		b := newBackend(t, answerJSON(404, `{}`))
		d, _ := newDispatcher(t, callback.Config{URL: b.URL, Breaker: callback.Breaker{ConsecutiveFailures: 1, Cooldown: time.Minute}})
		for range 10 {
			r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
			assert.ErrorIs(t, r.Err, callback.ErrStatus)
		}
		assert.Equal(t, 10, b.count(), "a 4xx shows the endpoint is up: it must not open the breaker")
	})
}

func TestBreakerDisabled(t *testing.T) {
	b := newBackend(t, answerJSON(503, `{}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, Breaker: callback.Breaker{Disabled: true}})
	for range 20 {
		r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
		assert.ErrorIs(t, r.Err, callback.ErrStatus)
	}
	assert.Equal(t, 20, b.count(), "every call must reach the backend")
}

func TestBreakerAfterWaitsWithoutBurningAttempts(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the other tests
	// The backend fails for a while and recovers. Each event has 21
	// attempts with 1-5 ms between them: without the breaker's wait all of
	// them would be spent in the first 100 ms and every event dead-lettered.
	var s switchable
	s.status.Store(http.StatusServiceUnavailable)
	b := newBackend(t, s.handler)
	var dead deadLetters
	const events = 50
	d, _ := newDispatcher(t, callback.Config{
		URL: b.URL, Retries: 20, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond,
		Breaker:    callback.Breaker{Cooldown: 100 * time.Millisecond},
		AfterLimit: callback.AfterLimit{Rate: -1},
		DeadLetter: dead.hook,
	})
	for i := range events {
		require.NoError(t, d.After(context.Background(), i, "message.send.after", []byte(`{}`)))
	}
	// Let the backend fail for a while: until the breaker has opened and
	// at least two more attempts (probes, once per cool-down) have failed.
	require.Eventually(t, func() bool { return breakerOpen(d) }, 10*time.Second, time.Millisecond, "the breaker must open")
	atOpen := b.count()
	require.Eventually(t, func() bool { return b.count() >= atOpen+2 }, 10*time.Second, time.Millisecond, "probes must go through while the events wait")
	failed := b.count()
	s.status.Store(http.StatusOK)
	require.NoError(t, d.Close(context.Background()), "Close must deliver every event")

	assert.Equal(t, 0, dead.len(), "no event may be dropped because the breaker was open")
	delivered := map[string]bool{}
	for _, r := range b.requests() {
		delivered[r.Query["appId"][0]] = true
	}
	assert.Len(t, delivered, events, "every event must be delivered")
	// 5 failures open it, up to 16 workers were already in flight, then one
	// probe per cool-down: far fewer than 50 events x 21 attempts.
	assert.Less(t, failed, 60, "attempts made while the breaker was open")
}

func TestBreakerOpenCloseDeadLettersWaitingEvents(t *testing.T) {
	b := newBackend(t, answerJSON(503, `{}`))
	var dead deadLetters
	d, err := callback.New(callback.Config{
		URL: b.URL, Logger: discardLogger(), DeadLetter: dead.hook,
		RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond,
		Breaker: callback.Breaker{Cooldown: time.Hour},
	})
	require.NoError(t, err)
	const events = 30
	for i := range events {
		require.NoError(t, d.After(context.Background(), i, "message.send.after", []byte(`{}`)))
	}
	require.Eventually(t, func() bool {
		return errors.Is(d.Before(context.Background(), 1, "x.before", []byte(`{}`)).Err, callback.ErrBreakerOpen)
	}, 10*time.Second, 5*time.Millisecond, "the breaker must open")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	assert.ErrorIs(t, d.Close(ctx), context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 20*time.Second, "Close's deadline must end the wait for the hour-long cooldown")
	evs, errs := dead.snapshot()
	assert.Len(t, evs, events, "every waiting event is dead-lettered, none lost")
	for _, err := range errs {
		assert.ErrorIs(t, err, callback.ErrClosed)
	}
}

func TestAfterRateLimit(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the other tests
	const (
		events  = 400
		perSec  = 500
		burst   = 10
		window  = 100 * time.Millisecond
		allowed = burst + perSec/10 // requests the limit lets through in any window
	)
	var mu sync.Mutex
	var at []time.Time
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	})
	start := time.Now() // before the limiter exists
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, QueueSize: events, AfterLimit: callback.AfterLimit{Rate: perSec, Burst: burst}})
	for i := range events {
		require.NoError(t, d.After(context.Background(), i, "message.send.after", []byte(`{}`)))
	}
	require.NoError(t, d.Close(context.Background()))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, at, events, "the queue absorbs the burst: every event is delivered")
	slices.SortFunc(at, time.Time.Compare)
	most := 0
	for i := range at { // count each window [at[i], at[i]+window)
		j := i
		for j < len(at) && at[j].Sub(at[i]) < window {
			j++
		}
		most = max(most, j-i)
	}
	// The limiter grants the last event no sooner than its burst and
	// (events-burst)/perSec after it was made, whatever the load, and the
	// request arrives after its grant. Unlimited, all 400 arrive within a
	// few milliseconds. How they bunch in a window depends on scheduling
	// (a stalled worker's requests arrive together): logged, not asserted.
	least := time.Duration(events-burst) * time.Second / perSec
	assert.GreaterOrEqual(t, at[len(at)-1].Sub(start), least, "the last of %d events, limit %d/s with burst %d", events, perSec, burst)
	t.Logf("at most %d requests in a %v window (the limit lets %d through)", most, window, allowed)
}

func TestAfterConcurrencyLimit(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the other tests
	const limit, events = 3, 60
	var in, most atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		n := in.Add(1)
		defer in.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(10 * time.Millisecond)
	})
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, Workers: 16, AfterLimit: callback.AfterLimit{Concurrency: limit, Rate: -1}})
	for i := range events {
		require.NoError(t, d.After(context.Background(), i, "message.send.after", []byte(`{}`)))
	}
	require.NoError(t, d.Close(context.Background()))
	assert.Equal(t, events, b.count(), "every event is delivered")
	assert.LessOrEqual(t, most.Load(), int64(limit), "requests in flight at once, with 16 workers")
	assert.Positive(t, most.Load())
}

func TestNewRejectsBadResilienceConfig(t *testing.T) {
	tests := map[string]callback.Config{
		"negative consecutive failures": {Breaker: callback.Breaker{ConsecutiveFailures: -1}},
		"negative min calls":            {Breaker: callback.Breaker{MinCalls: -1}},
		"ratio above 1":                 {Breaker: callback.Breaker{FailureRatio: 1.5}},
		"negative ratio":                {Breaker: callback.Breaker{FailureRatio: -0.1}},
		"negative window":               {Breaker: callback.Breaker{Window: -time.Second}},
		"negative cooldown":             {Breaker: callback.Breaker{Cooldown: -time.Second}},
		"negative burst":                {AfterLimit: callback.AfterLimit{Burst: -1}},
		"negative concurrency":          {AfterLimit: callback.AfterLimit{Concurrency: -1}},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			cfg.URL = "http://127.0.0.1:8989/callback"
			d, err := callback.New(cfg)
			assert.ErrorIs(t, err, callback.ErrInvalidConfig)
			assert.Nil(t, d)
		})
	}
}

// breakerOpen reports whether a breaker of d is open.
func breakerOpen(d *callback.Dispatcher) bool {
	for _, state := range d.Stats().Breakers {
		if state == "open" {
			return true
		}
	}
	return false
}

package callback_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// healthLog collects what Config.OnHealth is told.
type healthLog struct {
	mu  sync.Mutex
	evs []callback.HealthEvent
}

func (l *healthLog) hook(ev callback.HealthEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *healthLog) events() []callback.HealthEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]callback.HealthEvent(nil), l.evs...)
}

func (l *healthLog) states() []callback.HealthState {
	var s []callback.HealthState
	for _, ev := range l.events() {
		s = append(s, ev.State)
	}
	return s
}

// fakeClock is a health clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

const allowAnswer = `{"code":200,"msg":"success"}`

// TestHealthGone: an App backend answering 410 Gone to an After has its
// endpoint disabled at once: the event is dead-lettered with
// ErrEndpointDisabled and not retried, OnHealth hears Disabled, Before
// fails open (closed under FailClosed) with nothing sent, After
// dead-letters with nothing sent, another app's endpoint goes on, and
// EnableEndpoint restores delivery.
func TestHealthGone(t *testing.T) {
	var gone atomic.Bool
	gone.Store(true)
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			answerJSON(http.StatusGone, `{}`)(w, r)
			return
		}
		answerJSON(http.StatusOK, allowAnswer)(w, r)
	})
	b := newBackend(t, answerJSON(http.StatusOK, allowAnswer))
	apps := callback.ResolverFunc(func(_ context.Context, appID int) (callback.Endpoint, error) {
		if appID == 1 {
			return callback.Endpoint{URL: a.URL + "/cb"}, nil
		}
		return callback.Endpoint{URL: b.URL + "/cb"}, nil
	})
	var health healthLog
	var dead deadLetters
	d, _ := newDispatcher(t, fastRetries(callback.Config{
		Resolver:   apps,
		OnHealth:   health.hook,
		DeadLetter: dead.hook,
		Commands:   map[string]callback.Rule{"closed": {FailClosed: true}},
	}))
	ctx := context.Background()

	require.NoError(t, d.After(ctx, 1, "msg", []byte(`{"n":1}`)))
	waitUntil(t, "the 410's dead letter", func() bool { return dead.len() == 1 })
	_, errs := dead.snapshot()
	assert.ErrorIs(t, errs[0], callback.ErrEndpointDisabled, "dead letter error: got %v", errs[0])
	assert.Equal(t, 1, a.count(), "a 410 is not retried")
	waitUntil(t, "OnHealth's Disabled", func() bool { return len(health.events()) == 1 })
	ev := health.events()[0]
	assert.Equal(t, callback.HealthDisabled, ev.State)
	assert.ErrorIs(t, ev.Err, callback.ErrEndpointDisabled)
	assert.Equal(t, a.URL+"/cb", ev.URL)
	assert.Equal(t, []string{a.URL + "/cb"}, d.Stats().Disabled)

	for i := range 100 {
		r := d.Before(ctx, 1, "msg", []byte(`{}`))
		require.True(t, r.OK(), "call %d: a disabled endpoint fails open", i)
		require.ErrorIs(t, r.Err, callback.ErrEndpointDisabled, "call %d", i)
	}
	r := d.Before(ctx, 1, "closed", []byte(`{}`))
	assert.False(t, r.OK(), "FailClosed denies")
	assert.ErrorIs(t, r.Err, callback.ErrEndpointDisabled)
	require.NoError(t, d.After(ctx, 1, "msg", []byte(`{"n":2}`)), "After accepts")
	waitUntil(t, "the disabled endpoint's dead letter", func() bool { return dead.len() == 2 })
	_, errs = dead.snapshot()
	assert.ErrorIs(t, errs[1], callback.ErrEndpointDisabled, "got %v", errs[1])
	assert.Equal(t, 1, a.count(), "the disabled endpoint received nothing")

	// Another app's endpoint is not touched.
	assert.NoError(t, d.Before(ctx, 2, "msg", []byte(`{}`)).Err)
	require.NoError(t, d.After(ctx, 2, "msg", []byte(`{}`)))
	waitUntil(t, "app 2's After", func() bool { return b.count() == 2 })

	err := d.EnableEndpoint("http://127.0.0.1:1/unknown")
	assert.ErrorIs(t, err, callback.ErrNotFound, "got %v", err)
	gone.Store(false)
	require.NoError(t, d.EnableEndpoint(a.URL+"/cb"))
	waitUntil(t, "OnHealth's Enabled", func() bool { return len(health.events()) == 2 })
	assert.Equal(t, callback.HealthEnabled, health.events()[1].State)
	assert.Empty(t, d.Stats().Disabled)
	assert.NoError(t, d.Before(ctx, 1, "msg", []byte(`{}`)).Err)
	require.NoError(t, d.After(ctx, 1, "msg", []byte(`{}`)))
	waitUntil(t, "app 1's After once enabled", func() bool { return a.count() == 3 })
}

// failingCalls makes n Before calls to d, moving clock by step before each.
func failingCalls(d *callback.Dispatcher, clock *fakeClock, n int, step time.Duration) {
	for range n {
		clock.add(step)
		d.Before(context.Background(), 1, "msg", []byte(`{}`))
	}
}

// TestHealthSustainedFailures: an endpoint answering 503 is Failing at
// once and Disabled when its failures have lasted DisableAfter, not
// sooner, with at least MinFailures of them.
func TestHealthSustainedFailures(t *testing.T) {
	a := newBackend(t, answerJSON(http.StatusServiceUnavailable, `{}`))
	var health healthLog
	d, _ := newDispatcher(t, fastRetries(callback.Config{
		URL:      a.URL,
		OnHealth: health.hook,
		Health:   callback.HealthPolicy{DisableAfter: 2 * time.Second, MinFailures: 3},
	}))
	clock := newFakeClock()
	callback.SetHealthClock(d, clock.now)

	// Failures at 0, 0.3, ..., 1.8 s after the first: not yet 2 s.
	failingCalls(d, clock, 7, 300*time.Millisecond)
	assert.Empty(t, d.Stats().Disabled, "disabled before 2 s of failures")
	assert.Equal(t, []string{a.URL}, d.Stats().Failing)
	failingCalls(d, clock, 1, 300*time.Millisecond) // 2.1 s
	assert.Equal(t, []string{a.URL}, d.Stats().Disabled)
	waitUntil(t, "Failing then Disabled", func() bool { return len(health.events()) == 2 })
	evs := health.events()
	assert.Equal(t, []callback.HealthState{callback.HealthFailing, callback.HealthDisabled}, health.states())
	assert.Equal(t, 2100*time.Millisecond, evs[1].Since.Sub(evs[0].Since), "disabled after the first failure")
	assert.ErrorIs(t, evs[0].Err, callback.ErrStatus)
	assert.Equal(t, 8, a.count())
	failingCalls(d, clock, 5, time.Second)
	assert.Equal(t, 8, a.count(), "a disabled endpoint receives nothing")
}

// TestHealthMinFailures: 2 s of failures are not enough without
// MinFailures of them.
func TestHealthMinFailures(t *testing.T) {
	a := newBackend(t, answerJSON(http.StatusServiceUnavailable, `{}`))
	d, _ := newDispatcher(t, fastRetries(callback.Config{
		URL:    a.URL,
		Health: callback.HealthPolicy{DisableAfter: 2 * time.Second, MinFailures: 5},
	}))
	clock := newFakeClock()
	callback.SetHealthClock(d, clock.now)
	failingCalls(d, clock, 4, time.Hour)
	assert.Empty(t, d.Stats().Disabled, "4 failures of the 5 needed")
	failingCalls(d, clock, 1, time.Hour)
	assert.Equal(t, []string{a.URL}, d.Stats().Disabled)
}

// TestHealthFlapping: an endpoint failing every other call is never
// disabled and is told Failing and Recovered in turn.
func TestHealthFlapping(t *testing.T) {
	var n atomic.Int64
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 1 {
			answerJSON(http.StatusServiceUnavailable, `{}`)(w, r)
			return
		}
		answerJSON(http.StatusOK, allowAnswer)(w, r)
	})
	var health healthLog
	d, _ := newDispatcher(t, fastRetries(callback.Config{
		URL:      a.URL,
		OnHealth: health.hook,
		Health:   callback.HealthPolicy{DisableAfter: 2 * time.Second, MinFailures: 1},
	}))
	clock := newFakeClock()
	callback.SetHealthClock(d, clock.now)
	failingCalls(d, clock, 40, time.Second)
	waitUntil(t, "20 pairs", func() bool { return len(health.events()) == 40 })
	for i, s := range health.states() {
		want := callback.HealthFailing
		if i%2 == 1 {
			want = callback.HealthRecovered
		}
		require.Equal(t, want, s, "event %d", i)
	}
	assert.Empty(t, d.Stats().Disabled)
	assert.Equal(t, 40, a.count())
}

// TestHealthNeverDisable: a negative DisableAfter never disables.
func TestHealthNeverDisable(t *testing.T) {
	a := newBackend(t, answerJSON(http.StatusServiceUnavailable, `{}`))
	var health healthLog
	d, _ := newDispatcher(t, fastRetries(callback.Config{
		URL:      a.URL,
		OnHealth: health.hook,
		Health:   callback.HealthPolicy{DisableAfter: -1, MinFailures: 1},
	}))
	clock := newFakeClock()
	callback.SetHealthClock(d, clock.now)
	failingCalls(d, clock, 30, 24*time.Hour)
	assert.Empty(t, d.Stats().Disabled)
	assert.Equal(t, 30, a.count())
	waitUntil(t, "Failing", func() bool { return len(health.events()) == 1 })
	assert.Equal(t, []callback.HealthState{callback.HealthFailing}, health.states())
}

// TestHealthHookBlocks: an OnHealth hook that never returns stops neither
// Before, After nor other events' delivery, and Close returns by its
// deadline, saying so.
func TestHealthHookBlocks(t *testing.T) {
	a := newBackend(t, answerJSON(http.StatusGone, `{}`))
	b := newBackend(t, answerJSON(http.StatusOK, allowAnswer))
	apps := callback.ResolverFunc(func(_ context.Context, appID int) (callback.Endpoint, error) {
		if appID == 1 {
			return callback.Endpoint{URL: a.URL}, nil
		}
		return callback.Endpoint{URL: b.URL}, nil
	})
	release := make(chan struct{})
	var called atomic.Int32
	d, err := callback.New(fastRetries(callback.Config{
		Resolver: apps,
		Logger:   discardLogger(),
		OnHealth: func(callback.HealthEvent) {
			called.Add(1)
			<-release
		},
	}))
	require.NoError(t, err)
	defer close(release) // lets the hook's goroutine end, for goleak

	ctx := context.Background()
	r := d.Before(ctx, 1, "msg", []byte(`{}`))
	assert.ErrorIs(t, r.Err, callback.ErrEndpointDisabled)
	waitUntil(t, "the hook called", func() bool { return called.Load() == 1 })
	for range 10 {
		assert.NoError(t, d.Before(ctx, 2, "msg", []byte(`{}`)).Err)
		require.NoError(t, d.After(ctx, 2, "msg", []byte(`{}`)))
	}
	waitUntil(t, "app 2's After events", func() bool { return b.count() == 20 })

	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = d.Close(cctx)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "Close: got %v, want the deadline's error", err)
}

// TestHealthPolicyInvalid: a negative MinFailures is refused.
func TestHealthPolicyInvalid(t *testing.T) {
	_, err := callback.New(callback.Config{URL: "http://127.0.0.1:1/", Health: callback.HealthPolicy{MinFailures: -1}})
	assert.ErrorIs(t, err, callback.ErrInvalidConfig)
}

// readmeHealth is the README's OnHealth, compiled here so that it cannot
// drift.
func readmeHealth(apps callback.Resolver, alerts chan<- callback.HealthEvent) (*callback.Dispatcher, error) {
	d, err := callback.New(callback.Config{
		Resolver: apps,
		Health:   callback.HealthPolicy{DisableAfter: 24 * time.Hour},
		OnHealth: func(ev callback.HealthEvent) {
			alerts <- ev // to the operators' pager, or the App owner's mail
		},
	})
	return d, err
}

// TestHealthREADME runs the README's OnHealth: a 410 reaches the channel.
func TestHealthREADME(t *testing.T) {
	a := newBackend(t, answerJSON(http.StatusGone, `{}`))
	apps := callback.ResolverFunc(func(context.Context, int) (callback.Endpoint, error) {
		return callback.Endpoint{URL: a.URL}, nil
	})
	alerts := make(chan callback.HealthEvent, 1)
	d, err := readmeHealth(apps, alerts)
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close(context.Background())) }()
	d.Before(context.Background(), 1, "msg", []byte(`{}`))
	select {
	case ev := <-alerts:
		assert.Equal(t, callback.HealthDisabled, ev.State)
	case <-time.After(30 * time.Second):
		require.FailNow(t, "no health event within 30 s")
	}
}

// TestEndpointDisabledByResolver: an Endpoint that its Resolver says is
// disabled gets nothing: Before fails open and After dead-letters, with
// ErrEndpointDisabled; enabled again, it is called.
func TestEndpointDisabledByResolver(t *testing.T) {
	a := newBackend(t, answerJSON(http.StatusOK, allowAnswer))
	var disabled atomic.Bool
	disabled.Store(true)
	apps := callback.ResolverFunc(func(context.Context, int) (callback.Endpoint, error) {
		return callback.Endpoint{URL: a.URL, Disabled: disabled.Load()}, nil
	})
	var dead deadLetters
	d, _ := newDispatcher(t, callback.Config{Resolver: apps, DeadLetter: dead.hook})
	ctx := context.Background()
	r := d.Before(ctx, 1, "msg", []byte(`{}`))
	assert.True(t, r.OK())
	assert.ErrorIs(t, r.Err, callback.ErrEndpointDisabled)
	require.NoError(t, d.After(ctx, 1, "msg", []byte(`{}`)))
	require.Equal(t, 1, dead.len(), "dead-lettered in After")
	_, errs := dead.snapshot()
	assert.ErrorIs(t, errs[0], callback.ErrEndpointDisabled)
	assert.Equal(t, 0, a.count(), "nothing sent")

	disabled.Store(false)
	assert.NoError(t, d.Before(ctx, 1, "msg", []byte(`{}`)).Err)
	require.NoError(t, d.After(ctx, 1, "msg", []byte(`{}`)))
	waitUntil(t, "the After", func() bool { return a.count() == 2 })
}

// TestHealthNeverDisableGone: a negative DisableAfter keeps even a 410
// Gone endpoint enabled (the CLI's policy).
func TestHealthNeverDisableGone(t *testing.T) {
	a := newBackend(t, answerJSON(http.StatusGone, `{}`))
	d, _ := newDispatcher(t, fastRetries(callback.Config{URL: a.URL, Health: callback.HealthPolicy{DisableAfter: -1}}))
	for range 3 {
		r := d.Before(context.Background(), 1, "msg", []byte(`{}`))
		assert.ErrorIs(t, r.Err, callback.ErrStatus)
	}
	assert.Equal(t, 3, a.count())
	assert.Empty(t, d.Stats().Disabled)
}

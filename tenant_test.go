package callback_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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

// tenantEvents is how many after-events each app gets in the tenant tests
// (the bench uses 2,000; fewer keep the tests quick under -race).
const tenantEvents = 500

// tenantApp is an App backend that counts the distinct events it answered.
type tenantApp struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]bool
}

func newTenantApp(t *testing.T, answer http.HandlerFunc) *tenantApp {
	a := &tenantApp{seen: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server notice a request the
		// client abandoned (r.Context ends), which a hung answer waits for.
		_, _ = io.Copy(io.Discard, r.Body)
		answer(w, r)
		if r.Context().Err() == nil && r.URL.Query().Get("command") == "message.send.after" {
			a.mu.Lock()
			a.seen[r.Header.Get("Webhook-Id")] = true
			a.mu.Unlock()
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *tenantApp) delivered() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

// slowAnswer answers after 1.5 s.
func slowAnswer(w http.ResponseWriter, r *http.Request) {
	t := time.NewTimer(1500 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		answerJSON(200, `{"code":200,"msg":"ok"}`)(w, r)
	case <-r.Context().Done():
	}
}

// twoApps returns a Dispatcher with a Resolver sending app 1 to app1 (nil:
// no app 1) and app 2 to app2, defaults otherwise but for cfg's fields.
func twoApps(t *testing.T, cfg callback.Config, app1, app2 *tenantApp) *callback.Dispatcher {
	cfg.Logger = discardLogger()
	cfg.Resolver = callback.ResolverFunc(func(_ context.Context, appID int) (callback.Endpoint, error) {
		switch {
		case appID == 1 && app1 != nil:
			return callback.Endpoint{URL: app1.URL + "/cb"}, nil
		case appID == 2:
			return callback.Endpoint{URL: app2.URL + "/cb"}, nil
		}
		return callback.Endpoint{}, callback.ErrUnknownApp
	})
	d, err := callback.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		// The hung app's events are dead-lettered: the test is over.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

// waitFor polls cond until it holds or within passes, and reports whether
// it held.
func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// runTenant queues tenantEvents after-events for app 2, interleaved with
// as many for app 1 (when app1 is not nil), calls Before for app 2 all
// along, and returns how long app 2's events took to be delivered and
// the Before latencies. It fails the test on an error of app 2's.
func runTenant(t *testing.T, app1 http.HandlerFunc) (time.Duration, []time.Duration) {
	app2 := newTenantApp(t, answerJSON(200, `{"code":200,"msg":"ok"}`))
	var a1 *tenantApp
	if app1 != nil {
		a1 = newTenantApp(t, app1)
	}
	d := twoApps(t, callback.Config{}, a1, app2)
	ctx := context.Background()

	stop := make(chan struct{})
	var lat []time.Duration
	var failed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			if r := d.Before(ctx, 2, "message.send.before", []byte(`{"n":`+strconv.Itoa(i)+`}`)); r.Err != nil {
				failed.Add(1)
			}
			lat = append(lat, time.Since(start))
			time.Sleep(2 * time.Millisecond) // pacing, not synchronisation
		}
	})

	start := time.Now()
	for i := range tenantEvents {
		if a1 != nil {
			err := d.After(ctx, 1, "message.send.after", []byte(`{}`))
			if err != nil {
				require.ErrorIs(t, err, callback.ErrQueueFull, "app 1's own events only may be refused")
			}
		}
		require.NoError(t, d.After(ctx, 2, "message.send.after", []byte(`{"n":`+strconv.Itoa(i)+`}`)), "app 2's After %d", i)
	}
	ok := waitFor(60*time.Second, func() bool { return app2.delivered() == tenantEvents })
	took := time.Since(start)
	close(stop)
	wg.Wait()
	require.True(t, ok, "app 2: %d of %d delivered in %v", app2.delivered(), tenantEvents, took)
	assert.Zero(t, failed.Load(), "app 2's Before calls that failed")
	return took, lat
}

// assertIsolated checks app 2's times beside app 1. Without the isolation,
// app 2's last event waits behind app 1's: tenantEvents of them, 1.5 s
// (slow) or 2 s (hung) each, 16 workers at a time, so at least
// isolationFloor. That holds by construction, which the README's target
// (twice alone plus a second, and its "Many apps" limits' one Timeout for
// the attempts app 1 started first) does not on a loaded machine, where
// the run beside app 1 (twice the goroutines, one more server) slows more
// than the run alone: the target is logged, and the bench measures it.
// Before's p99 gets room over its p99 alone, measured in the same test; a
// Before call held up past its 2 s timeout fails, which runTenant asserts.
func assertIsolated(t *testing.T, name string, alone, took time.Duration, aloneLat, lat []time.Duration) {
	t.Helper()
	const isolationFloor = tenantEvents * 1500 * time.Millisecond / 16
	assert.Less(t, took, isolationFloor, "app 2 beside a %s app 1: as long as waiting behind app 1's events", name)
	if target := 2*alone + time.Second + 2*time.Second; took > target {
		t.Logf("app 2 beside a %s app 1 took %v, past the README's target of %v on this machine", name, took, target)
	}
	assert.Less(t, p99(lat), 4*p99(aloneLat)+time.Second, "app 2's Before p99 (alone: %v)", p99(aloneLat))
}

func p99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// One app's hung or slow App backend must not hold up another app's
// deliveries: app 2's events are delivered within a bound derived from
// the time they take alone, and its Before calls do not fail.
func TestTenantIsolationMemory(t *testing.T) {
	alone, aloneLat := runTenant(t, nil)
	for name, h := range map[string]http.HandlerFunc{"hung": hang, "slow": slowAnswer} {
		t.Run(name, func(t *testing.T) {
			took, lat := runTenant(t, h)
			t.Logf("app 2 alone %v, beside a %s app 1 %v; Before p99 %v over %d calls", alone, name, took, p99(lat), len(lat))
			assertIsolated(t, name, alone, took, aloneLat, lat)
		})
	}
}

// A hung app filling its share of the memory queue gets ErrQueueFull for
// its own events; the other app's After calls all succeed and are
// delivered.
func TestTenantQueueShare(t *testing.T) {
	app1 := newTenantApp(t, hang)
	app2 := newTenantApp(t, answerJSON(200, `{"code":200,"msg":"ok"}`))
	d := twoApps(t, callback.Config{QueueSize: 400}, app1, app2)
	ctx := context.Background()
	full := 0
	for range 600 {
		if err := d.After(ctx, 1, "message.send.after", []byte(`{}`)); err != nil {
			require.ErrorIs(t, err, callback.ErrQueueFull)
			full++
		}
	}
	assert.Greater(t, full, 450, "app 1 may hold a quarter of the queue, and what its workers hold")
	for i := range 50 {
		require.NoError(t, d.After(ctx, 2, "message.send.after", []byte(`{"n":`+strconv.Itoa(i)+`}`)), "app 2's After %d", i)
	}
	assert.True(t, waitFor(20*time.Second, func() bool { return app2.delivered() == 50 }),
		"app 2: %d of 50 delivered", app2.delivered())
}

// EndpointQueueSize sets an endpoint's share; a negative one is refused.
func TestEndpointQueueSize(t *testing.T) {
	b := newBackend(t, hang)
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, QueueSize: 100, EndpointQueueSize: 10, Workers: 1, Logger: discardLogger()})
	accepted := 0
	for range 50 {
		if d.After(context.Background(), 1, "message.send.after", []byte(`{}`)) == nil {
			accepted++
		}
	}
	// 10 queued, and at most the one the worker holds.
	assert.LessOrEqual(t, accepted, 11)
	assert.GreaterOrEqual(t, accepted, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = d.Close(ctx) // the hung backend's events are dead-lettered

	_, err := callback.New(callback.Config{URL: b.URL, EndpointQueueSize: -1})
	assert.ErrorIs(t, err, callback.ErrInvalidConfig)
}

// Two apps whose URLs differ only in the query are two endpoints: app a's
// open breaker leaves app b's Before calls alone.
func TestBreakerKeyedByQuery(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("tenant") == "a" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		answerJSON(200, `{"code":200,"msg":"ok"}`)(w, r)
	})
	d, _ := newDispatcher(t, callback.Config{Logger: discardLogger(),
		Resolver: callback.ResolverFunc(func(_ context.Context, appID int) (callback.Endpoint, error) {
			return callback.Endpoint{URL: b.URL + "/cb?tenant=" + string(rune('a'+appID-1))}, nil
		})})
	ctx := context.Background()
	require.True(t, waitFor(10*time.Second, func() bool {
		return errors.Is(d.Before(ctx, 1, "message.send.before", []byte(`{}`)).Err, callback.ErrBreakerOpen)
	}), "app a's breaker must open")
	for i := range 20 {
		r := d.Before(ctx, 2, "message.send.before", []byte(`{}`))
		require.NoError(t, r.Err, "app b's call %d", i)
	}
	assert.Len(t, d.Stats().Breakers, 2, "one breaker per URL, query included")
}

// The registry drops the endpoints that no route uses once idle: an app
// whose URL changes many times leaves one endpoint, not one per URL.
func TestEndpointRegistryShrinks(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200,"msg":"ok"}`))
	var version atomic.Int64
	d, _ := newDispatcher(t, callback.Config{Logger: discardLogger(),
		Resolver: callback.ResolverFunc(func(_ context.Context, appID int) (callback.Endpoint, error) {
			if appID == 2 {
				return callback.Endpoint{URL: b.URL + "/steady"}, nil
			}
			return callback.Endpoint{URL: b.URL + "/cb?v=" + strconv.FormatInt(version.Load(), 10)}, nil
		})})
	callback.SetEndpointIdle(d, 50*time.Millisecond)
	ctx := context.Background()
	require.NoError(t, d.Before(ctx, 2, "message.send.before", []byte(`{}`)).Err)
	for range 200 {
		version.Add(1)
		require.NoError(t, d.Before(ctx, 1, "message.send.before", []byte(`{}`)).Err)
		require.NoError(t, d.After(ctx, 1, "message.send.after", []byte(`{}`)))
	}
	// Each round makes one new endpoint, which runs the sweep; the rounds
	// are spaced by twice the idle time, so that only the endpoints of the
	// current routes (and the one just made) can be left.
	assert.True(t, waitFor(20*time.Second, func() bool {
		version.Add(1)
		d.Before(ctx, 1, "message.send.before", []byte(`{}`))
		if len(d.Stats().Breakers) <= 3 {
			return true
		}
		time.Sleep(100 * time.Millisecond) // pacing: let the endpoints idle
		return false
	}), "endpoints left: %d", len(d.Stats().Breakers))
	br := d.Stats().Breakers
	assert.Contains(t, br, b.URL+"/steady", "an endpoint a current route uses stays, however idle")
}

// AfterLimit.Concurrency below Workers keeps a reserve: an endpoint whose
// backend hangs, though its events came first and nothing else had work,
// holds no more than Concurrency workers, and another app's events are
// delivered at once, not after the hung attempts' Timeout (README, Many
// apps, Limits).
func TestConcurrencyReservesWorkers(t *testing.T) {
	var inFlight, most atomic.Int32
	app1 := newTenantApp(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		hang(w, r)
	})
	app2 := newTenantApp(t, answerJSON(200, `{"code":200,"msg":"ok"}`))
	d := twoApps(t, callback.Config{Workers: 4, Timeout: time.Minute, AfterLimit: callback.AfterLimit{Concurrency: 3}}, app1, app2)
	ctx := context.Background()
	for range 20 {
		require.NoError(t, d.After(ctx, 1, "message.send.after", []byte(`{}`)))
	}
	require.True(t, waitFor(10*time.Second, func() bool { return inFlight.Load() == 3 }),
		"app 1's hung attempts: %d in flight, want 3", inFlight.Load())
	for i := range 5 {
		require.NoError(t, d.After(ctx, 2, "message.send.after", []byte(`{"n":`+strconv.Itoa(i)+`}`)))
	}
	assert.True(t, waitFor(10*time.Second, func() bool { return app2.delivered() == 5 }),
		"app 2: %d of 5 delivered while app 1 hangs", app2.delivered())
	assert.Equal(t, int32(3), most.Load(), "app 1 never had more than Concurrency attempts in flight")
}

package natsqueue_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// tenantEvents is how many after-events each app gets in the tenant test
// (the bench uses 2,000; each After waits for JetStream, so fewer keep
// the test quick under -race).
const tenantEvents = 200

// tenantApp is an App backend that counts the distinct events it answered
// and the requests it got.
type tenantApp struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	seen     map[string]bool
}

func newTenantApp(t *testing.T, answer http.HandlerFunc) *tenantApp {
	a := &tenantApp{seen: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server notice a request the
		// client abandoned (r.Context ends), which a hung answer waits for.
		_, _ = io.Copy(io.Discard, r.Body)
		a.requests.Add(1)
		answer(w, r)
		if r.Context().Err() == nil {
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

func answerOK(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, `{"code":200,"msg":"ok"}`)
}

func hangAnswer(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

func slowAnswer(w http.ResponseWriter, r *http.Request) {
	t := time.NewTimer(1500 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		answerOK(w, r)
	case <-r.Context().Done():
	}
}

// within polls cond until it holds or d passes, and reports whether it held.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// runTenant starts a Dispatcher on an Embedded queue with a Resolver for
// app 1 (app1: nil means none) and app 2, queues tenantEvents events for
// each, interleaved, and returns how long app 2's took to be delivered.
func runTenant(t *testing.T, app1 http.HandlerFunc, dead *atomic.Int64) (time.Duration, *tenantApp) {
	app2 := newTenantApp(t, answerOK)
	var a1 *tenantApp
	if app1 != nil {
		a1 = newTenantApp(t, app1)
	}
	ctx := context.Background()
	q, err := natsqueue.Embedded(ctx, t.TempDir(), natsqueue.Options{})
	require.NoError(t, err)
	d, err := callback.New(callback.Config{
		Queue:  q.ForDispatcher(),
		Logger: quiet,
		Resolver: callback.ResolverFunc(func(_ context.Context, appID int) (callback.Endpoint, error) {
			switch {
			case appID == 1 && a1 != nil:
				return callback.Endpoint{URL: a1.URL + "/cb"}, nil
			case appID == 2:
				return callback.Endpoint{URL: app2.URL + "/cb"}, nil
			}
			return callback.Endpoint{}, callback.ErrUnknownApp
		}),
		DeadLetter: func(callback.Event, error) { dead.Add(1) },
	})
	if err != nil {
		_ = q.Close()
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_ = d.Close(c) // app 1's events stay in the stream, which goes
	})
	start := time.Now()
	var wg sync.WaitGroup
	for app := 1; app <= 2; app++ {
		if app == 1 && a1 == nil {
			continue
		}
		wg.Go(func() {
			for i := range tenantEvents {
				if err := d.After(ctx, app, "message.send.after", []byte(`{"n":`+strconv.Itoa(i)+`}`)); err != nil {
					t.Errorf("app %d's After %d: %v", app, i, err)
					return
				}
			}
		})
	}
	ok := within(60*time.Second, func() bool { return app2.delivered() == tenantEvents })
	took := time.Since(start)
	wg.Wait()
	require.True(t, ok, "app 2: %d of %d delivered in %v", app2.delivered(), tenantEvents, took)
	return took, a1
}

// With the durable queue too, a hung or slow app 1 does not hold up app
// 2's deliveries, and the hung app's events are postponed, not
// dead-lettered: its breaker's open spells burn none of their
// RetrySchedule.
func TestTenantIsolationDurable(t *testing.T) {
	var dead atomic.Int64
	alone, _ := runTenant(t, nil, &dead)
	for name, h := range map[string]http.HandlerFunc{"hung": hangAnswer, "slow": slowAnswer} {
		t.Run(name, func(t *testing.T) {
			var dead atomic.Int64
			took, a1 := runTenant(t, h, &dead)
			t.Logf("app 2 alone %v, beside a %s app 1 %v; app 1 got %d requests", alone, name, took, a1.requests.Load())
			// Without the isolation, app 2's last event waits behind app
			// 1's: 200 of them, 1.5 s (slow) or 2 s (hung) each, 16
			// workers at a time: at least isolationFloor, by
			// construction. The README's target (twice alone plus a
			// second, and one Timeout for the attempts app 1 started
			// first) is not, on a loaded machine where the run beside app
			// 1 slows more than the run alone: it is logged, and the bench
			// checks it on 2,000 events.
			const isolationFloor = tenantEvents * 1500 * time.Millisecond / 16
			assert.Less(t, took, isolationFloor, "app 2 beside a %s app 1: as long as waiting behind app 1's events", name)
			if target := 2*alone + time.Second + 2*time.Second; took > target {
				t.Logf("past the README's target of %v on this machine", target)
			}
			assert.Zero(t, dead.Load(), "events dead-lettered")
			if name == "hung" {
				// 500 events, each handed out many times while its breaker
				// was open: only the first few went to the network.
				assert.Less(t, a1.requests.Load(), int64(100), "requests to the hung app")
			}
		})
	}
}

// A postponed hand-out is not counted in Attempts: events handed out
// many times while their endpoint was busy (Concurrency 1) still get
// every attempt of their schedule. Each event's first request fails.
func TestPostponeKeepsAttempts(t *testing.T) {
	var mu sync.Mutex
	var ok atomic.Int64
	tried := map[string]bool{}
	a := newTenantApp(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := !tried[r.Header.Get("Webhook-Id")]
		tried[r.Header.Get("Webhook-Id")] = true
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ok.Add(1)
		answerOK(w, r)
	})
	ctx := context.Background()
	q, err := natsqueue.Embedded(ctx, t.TempDir(), natsqueue.Options{})
	require.NoError(t, err)
	var dead atomic.Int64
	d, err := callback.New(callback.Config{
		URL: a.URL, Queue: q.ForDispatcher(), Logger: quiet,
		// Two attempts per event: if the postponed hand-outs counted, an
		// event's first request would already be past its schedule.
		RetrySchedule: []time.Duration{10 * time.Millisecond},
		Breaker:       callback.Breaker{Disabled: true},
		AfterLimit:    callback.AfterLimit{Concurrency: 1},
		DeadLetter:    func(callback.Event, error) { dead.Add(1) },
	})
	if err != nil {
		_ = q.Close()
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = d.Close(c)
	})
	const events = 20
	for i := range events {
		require.NoError(t, d.After(ctx, i, "message.send.after", []byte(`{}`)))
	}
	assert.True(t, within(30*time.Second, func() bool { return int(ok.Load()+dead.Load()) >= events }),
		"delivered %d, dead %d", ok.Load(), dead.Load())
	assert.Zero(t, dead.Load(), "events dead-lettered")
	assert.Equal(t, int64(events), ok.Load())
}

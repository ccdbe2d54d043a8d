package callback_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// keyed is the body of an ordered test event: its app, key and number
// under the key, from 0.
type keyed struct {
	A int    `json:"a"`
	K string `json:"k"`
	N int    `json:"n"`
}

func keyedBody(a int, k string, n int) []byte {
	b, _ := json.Marshal(keyed{a, k, n})
	return b
}

// orderChecker is an App backend's handler that checks the order of
// keyed events: an attempt at event n of a key must come after event n-1
// of that key was answered 2xx, and never while an attempt at another
// event of the key is in flight (event n-1 may come again: a retry of an
// attempt whose 2xx was lost to a timeout). It answers 503 to a first attempt when fail says so,
// after a random latency up to maxLatency, and 2xx otherwise.
type orderChecker struct {
	fail       func(keyed) bool
	maxLatency time.Duration

	mu         sync.Mutex
	next       map[string]int // app/key -> number of the next event due
	busy       map[string]int // app/key -> the event in flight
	tried      map[keyed]bool
	delivered  int
	done       map[string]time.Time // app/key -> when its last event was answered 2xx
	violations []string
}

func newOrderChecker() *orderChecker {
	return &orderChecker{
		next: map[string]int{}, busy: map[string]int{}, tried: map[keyed]bool{}, done: map[string]time.Time{},
		fail: func(keyed) bool { return false },
	}
}

func (c *orderChecker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev keyed
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ak := fmt.Sprintf("%d/%s", ev.A, ev.K)
	c.mu.Lock()
	// An attempt whose 2xx the Dispatcher did not get (it timed out on a
	// loaded machine) is sent again: at least once, in order. So a repeat
	// of the event last answered 2xx, or of the one in flight, is no
	// violation; any other event is.
	if n, ok := c.busy[ak]; ok && n != ev.N {
		c.violations = append(c.violations, fmt.Sprintf("%s: event %d sent while event %d of its key was in flight", ak, ev.N, n))
	}
	if ev.N != c.next[ak] && ev.N != c.next[ak]-1 {
		c.violations = append(c.violations, fmt.Sprintf("%s: event %d sent when %d was due", ak, ev.N, c.next[ak]))
	}
	c.busy[ak] = ev.N
	status := http.StatusOK
	if !c.tried[ev] && c.fail(ev) {
		status = http.StatusServiceUnavailable
	}
	c.tried[ev] = true
	c.mu.Unlock()
	if c.maxLatency > 0 {
		time.Sleep(rand.N(c.maxLatency))
	}
	c.mu.Lock()
	delete(c.busy, ak)
	if status == http.StatusOK && ev.N == c.next[ak] { // a repeat is a violation, counted once
		c.next[ak] = ev.N + 1
		c.delivered++
		c.done[ak] = time.Now()
	}
	c.mu.Unlock()
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"code":0}`))
}

func (c *orderChecker) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.delivered
}

func (c *orderChecker) problems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.violations...)
}

// afterKeyed queues events 0 to n-1 of each key of app a, each key's in
// order, from a few goroutines.
func afterKeyed(t *testing.T, d *callback.Dispatcher, a int, keys []string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range n {
				for j, k := range keys {
					if j%4 != g {
						continue
					}
					ctx := callback.WithOrderKey(context.Background(), k)
					if err := d.After(ctx, a, "group.message.after", keyedBody(a, k, i)); err != nil {
						t.Errorf("After %s/%d: %v", k, i, err)
					}
				}
			}
		})
	}
	wg.Wait()
}

func keyNames(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return keys
}

// 100 keys of 40 events each, a quarter of first attempts answered 503
// and every answer after a random latency: each key's events reach the
// App backend one at a time and in After's order, and all of them do.
func TestOrderKeyInOrderThroughRetries(t *testing.T) {
	c := newOrderChecker()
	c.fail = func(keyed) bool { return rand.N(4) == 0 }
	c.maxLatency = 3 * time.Millisecond
	b := newBackend(t, c.ServeHTTP)
	d, _ := newDispatcher(t, fastRetries(callback.Config{URL: b.URL, Retries: 8}))
	const keys, events = 100, 40
	afterKeyed(t, d, 7, keyNames("conv-", keys), events)
	require.Eventually(t, func() bool { return c.count() == keys*events }, 60*time.Second, 10*time.Millisecond,
		"delivered %d of %d", c.count(), keys*events)
	assert.Empty(t, c.problems())
	s := d.Stats()
	assert.Positive(t, s.Total.Retried, "no first attempt failed: the test proves nothing")
	assert.Zero(t, s.Total.DeadLettered)
	assert.Zero(t, s.WaitingForKey)
}

// An order key is refused when it is empty, too long or unprintable, and
// nothing is queued.
func TestOrderKeyRefused(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":0}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	for name, key := range map[string]string{
		"empty": "", "too long": strings.Repeat("k", 257), "control": "a\nb", "DEL": "a\x7f",
		"C1": "a\u0085", "bidi": "a\u202eb", "not UTF-8": "a\xffb",
	} {
		err := d.After(callback.WithOrderKey(context.Background(), key), 1, "group.message.after", []byte(`{}`))
		assert.ErrorIs(t, err, callback.ErrInvalidOrderKey, name)
	}
	assert.Zero(t, d.Stats().Total.Queued)
	rejected := d.Attempts(callback.AttemptQuery{Outcome: callback.OutcomeRejected})
	require.Len(t, rejected, 7)
	for _, a := range rejected {
		assert.Empty(t, a.OrderKey, "an invalid key reached the attempt log")
	}
	require.NoError(t, d.After(callback.WithOrderKey(context.Background(), strings.Repeat("k", 256)), 1, "group.message.after", []byte(`{}`)))
	require.NoError(t, d.After(callback.WithOrderKey(context.Background(), "群聊-42"), 1, "group.message.after", []byte(`{}`)))
}

// closeNow closes d at once, dead-lettering what it holds.
func closeNow(d *callback.Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = d.Close(ctx)
}

// stuckKeys answers the events of the key stuck-503 with 503 and lets
// those of stuck-hang hang until the client gives up, noting each attempt
// on the channel of its key; every other event goes to next.
func stuckKeys(next http.HandlerFunc, attempts map[string]chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var ev keyed
		_ = json.Unmarshal(raw, &ev)
		if ch, ok := attempts[ev.K]; ok {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		switch ev.K {
		case "stuck-hang":
			hang(w, r)
		case "stuck-503":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			r.Body = io.NopCloser(bytes.NewReader(raw))
			next(w, r)
		}
	}
}

// A key whose App backend answers 503 forever and one whose attempts hang
// past the timeout hold their own events only: 50 healthy keys of the
// same app and endpoint beside them are all delivered while the stuck
// keys still hold theirs. The time beside them against the time alone is
// logged, not asserted (a loaded machine breaks any such bound); the
// bench's ordered row measures it.
func TestOrderKeyStuckHoldsOnlyItsKey(t *testing.T) {
	healthy := keyNames("ok-", 50)
	const events, stuckEvents = 20, 10
	run := func(withStuck bool) time.Duration {
		c := newOrderChecker()
		c.maxLatency = 2 * time.Millisecond
		attempts := map[string]chan struct{}{"stuck-503": make(chan struct{}, 1), "stuck-hang": make(chan struct{}, 1)}
		b := newBackend(t, stuckKeys(c.ServeHTTP, attempts))
		d, _ := newDispatcher(t, fastRetries(callback.Config{URL: b.URL, Retries: 1 << 20, Timeout: time.Second}))
		defer closeNow(d)
		if withStuck {
			afterKeyed(t, d, 1, []string{"stuck-503", "stuck-hang"}, stuckEvents)
			<-attempts["stuck-503"]
			<-attempts["stuck-hang"]
		}
		start := time.Now()
		afterKeyed(t, d, 1, healthy, events)
		require.Eventually(t, func() bool { return c.count() == len(healthy)*events }, 60*time.Second, time.Millisecond, "%d %+v", c.count(), d.Stats())
		took := time.Since(start)
		assert.Empty(t, c.problems())
		if withStuck {
			assert.Equal(t, 2*(stuckEvents-1), d.Stats().WaitingForKey, "the stuck keys' later events wait for them")
		}
		return took
	}
	alone := run(false)
	beside := run(true)
	t.Logf("50 keys alone: %v; beside two stuck keys: %v (%.2fx)", alone, beside, float64(beside)/float64(alone))
}

// Another app's events under the same key string are not held by a stuck
// key; the attempt log shows each event's key and the event it waits for.
// App 2's first event is held until all of its events are queued, so each
// of the others waits for the one before it however fast the backend
// answers (without that, a delivery between two Afters emptied the key's
// line and the next event waited for nothing).
func TestOrderKeyOfAnotherAppNotHeld(t *testing.T) {
	c := newOrderChecker()
	attempts := map[string]chan struct{}{"stuck-503": make(chan struct{}, 1)}
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var ev keyed
		_ = json.Unmarshal(raw, &ev)
		if ev.A == 1 { // app 1's key is stuck
			ev.K = "stuck-503"
		}
		if ev.A == 2 && ev.N == 0 {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(keyedBody(ev.A, ev.K, ev.N)))
		stuckKeys(c.ServeHTTP, attempts)(w, r)
	})
	// App 1's stuck key retries every 50 ms or so, and the attempt log
	// holds 16,384 records, so its retries cannot push app 2's records
	// out of the log however long a loaded machine takes.
	cfg := fastRetries(callback.Config{URL: b.URL, Retries: 1 << 20, AttemptLog: 1 << 14})
	cfg.RetryWaitMin, cfg.RetryWaitMax = 50*time.Millisecond, 50*time.Millisecond
	d, _ := newDispatcher(t, cfg)
	defer closeNow(d)
	const events = 20
	afterKeyed(t, d, 1, []string{"room"}, events)
	<-attempts["stuck-503"]
	afterKeyed(t, d, 2, []string{"room"}, events)
	release()
	require.Eventually(t, func() bool { return c.count() == events }, 60*time.Second, time.Millisecond)
	assert.Empty(t, c.problems())
	assert.Equal(t, events-1, d.Stats().WaitingForKey)

	for app := 1; app <= 2; app++ {
		queued := d.Attempts(callback.AttemptQuery{ByApp: true, AppID: app, OrderKey: "room", Outcome: callback.OutcomeQueued})
		require.Len(t, queued, events)
		assert.Empty(t, queued[0].WaitsFor, "app %d: the first event waits for nothing", app)
		for i := 1; i < events; i++ {
			assert.Equal(t, "room", queued[i].OrderKey)
			assert.Equal(t, queued[i-1].EventID, queued[i].WaitsFor, "app %d, event %d", app, i)
		}
	}
	for _, a := range d.Attempts(callback.AttemptQuery{ByApp: true, AppID: 2, Kind: callback.KindAfter}) {
		assert.Equal(t, "room", a.OrderKey, "record %d (%s)", a.Seq, a.Outcome)
	}
}

// At Close's deadline a key's remaining events are dead-lettered in
// After's order, the one in flight first.
func TestOrderKeyClosedInOrder(t *testing.T) {
	attempts := map[string]chan struct{}{"stuck-hang": make(chan struct{}, 1)}
	b := newBackend(t, stuckKeys(answerJSON(200, `{"code":0}`), attempts))
	var dead deadLetters
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, DeadLetter: dead.hook, Timeout: time.Minute})
	const events = 30
	afterKeyed(t, d, 1, []string{"stuck-hang"}, events)
	<-attempts["stuck-hang"]
	closeNow(d)
	evs, errs := dead.snapshot()
	require.Len(t, evs, events)
	for i, ev := range evs {
		var k keyed
		require.NoError(t, json.Unmarshal(ev.Body, &k))
		assert.Equal(t, i, k.N, "dead letter %d", i)
		assert.Equal(t, "stuck-hang", ev.OrderKey)
		assert.ErrorIs(t, errs[i], callback.ErrClosed)
	}
}

package natsqueue_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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
	"github.com/nats-io/nats.go/jetstream"
)

// keyed is the body of an ordered test event: its app, key and number
// under the key, from 0.
type keyed struct {
	A int    `json:"a"`
	K string `json:"k"`
	N int    `json:"n"`
}

// orderApp is an App backend that checks the order of keyed events: an
// attempt at event n of a key must come after event n-1 of that key was
// answered 2xx, and never while another attempt of the key is in flight.
// It answers 503 to a first attempt when fail says so, after a random
// latency up to maxLatency, 2xx otherwise, and as answer says for the
// keys it names.
type orderApp struct {
	*httptest.Server
	fail       func(keyed) bool
	refuse     func(ev keyed, tries int) bool // 503 when it says so, given the attempts made before; nil: none
	maxLatency time.Duration
	answer     map[string]http.HandlerFunc // by key, unchecked

	mu         sync.Mutex
	next       map[string]int // app/key -> number of the next event due
	busy       map[string]int // app/key -> the event in flight
	tries      map[keyed]int
	delivered  int
	nodes      map[string]int // 2xx answers by the node query parameter
	violations []string
	seen       chan string // keys of the events answered by answer
}

func newOrderApp(t testing.TB, fail func(keyed) bool, maxLatency time.Duration, answer map[string]http.HandlerFunc) *orderApp {
	a := &orderApp{fail: fail, maxLatency: maxLatency, answer: answer,
		next: map[string]int{}, busy: map[string]int{}, tries: map[keyed]int{}, nodes: map[string]int{},
		seen: make(chan string, 1024)}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

func (a *orderApp) serve(w http.ResponseWriter, r *http.Request) {
	var ev keyed
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if h, ok := a.answer[ev.K]; ok {
		select {
		case a.seen <- ev.K:
		default:
		}
		h(w, r)
		return
	}
	ak := fmt.Sprintf("%d/%s", ev.A, ev.K)
	a.mu.Lock()
	// An event answered 2xx already may come again at any time: its 2xx
	// was not taken (the attempt timed out on a loaded machine), or its
	// ack was lost, after which a node that only has another node's word
	// that it was answered sends it again. At least once: a repeat is no
	// violation. Any other event must be the key's next, with none of the
	// key's in flight but a repeat of itself.
	repeat := ev.N < a.next[ak]
	if n, ok := a.busy[ak]; ok && n != ev.N && !repeat {
		a.violations = append(a.violations, fmt.Sprintf("%s: event %d sent while event %d of its key was in flight", ak, ev.N, n))
	}
	if ev.N != a.next[ak] && !repeat {
		a.violations = append(a.violations, fmt.Sprintf("%s: event %d sent when %d was due", ak, ev.N, a.next[ak]))
	}
	if !repeat {
		a.busy[ak] = ev.N
	}
	status := http.StatusOK
	if (a.tries[ev] == 0 && a.fail != nil && a.fail(ev)) || (a.refuse != nil && a.refuse(ev, a.tries[ev])) {
		status = http.StatusServiceUnavailable
	}
	a.tries[ev]++
	a.mu.Unlock()
	if a.maxLatency > 0 {
		time.Sleep(rand.N(a.maxLatency))
	}
	a.mu.Lock()
	if !repeat {
		delete(a.busy, ak)
	}
	if status == http.StatusOK && ev.N == a.next[ak] {
		a.next[ak] = ev.N + 1
		a.delivered++
		a.nodes[r.URL.Query().Get("node")]++
	}
	a.mu.Unlock()
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"code":0}`))
}

func (a *orderApp) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.delivered
}

func (a *orderApp) problems() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.violations...)
}

func (a *orderApp) byNode() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.nodes {
		out[k] = v
	}
	return out
}

// afterKeyed queues events 0 to n-1 of each key of app, each key's in
// order, spreading the keys over the Dispatchers given.
func afterKeyed(t testing.TB, ds []*callback.Dispatcher, app int, keys []string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for j, k := range keys {
		d := ds[j%len(ds)]
		wg.Go(func() {
			ctx := callback.WithOrderKey(context.Background(), k)
			for i := range n {
				b, _ := json.Marshal(keyed{app, k, i})
				if err := d.After(ctx, app, "group.message.after", b); err != nil {
					t.Errorf("After %s/%d: %v", k, i, err)
					return
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

// retryFast retries a failed event after 20 ms, up to 20 times.
var retryFast = func() []time.Duration {
	s := make([]time.Duration, 20)
	for i := range s {
		s[i] = 20 * time.Millisecond
	}
	return s
}()

// Two nodes on two connections to one stream: 100 keys of 40 events
// each, a quarter of first attempts answered 503, every answer after a
// random latency. Each key's events reach the App backend one at a time,
// in the order the stream stored them (the order After was called in for
// each key, as one goroutine calls it), and all of them do.
func TestOrderKeyTwoNodes(t *testing.T) {
	twoNodesOrdered(t, 4, 3*time.Millisecond, natsqueue.Options{}, 100, 40, true)
}

// twoNodesOrdered runs keys x events keyed events through two nodes on
// one stream with opts, one first attempt in failOneIn answered 503 and
// every answer after a random latency up to latency, sent through both
// nodes or through the first only, and checks that each key's events
// reached the App one at a time, in order, all of them, and that both
// nodes delivered some.
func twoNodesOrdered(t *testing.T, failOneIn int, latency time.Duration, opts natsqueue.Options, keys, events int, bothSend bool) {
	t.Helper()
	srv := startServer(t, t.TempDir())
	a := newOrderApp(t, func(keyed) bool { return rand.N(failOneIn) == 0 }, latency, nil)
	cfg := func(name string) callback.Config {
		return callback.Config{URL: a.URL + "?node=" + name, RetrySchedule: retryFast, Breaker: callback.Breaker{Disabled: true}, AfterLimit: callback.AfterLimit{Rate: -1}}
	}
	nodeA := newNode(t, connect(t, srv.ClientURL()), opts, cfg("a"))
	nodeB := newNode(t, connect(t, srv.ClientURL()), opts, cfg("b"))
	senders := []*callback.Dispatcher{nodeA.d}
	if bothSend {
		senders = append(senders, nodeB.d)
	}
	afterKeyed(t, senders, 7, keyNames("conv-", keys), events)
	checkTwoNodesDelivered(t, a, nodeA, nodeB, keys*events)
}

// On an Embedded queue, a key whose App backend answers 503 forever and
// one whose attempts hang past the timeout hold only their own events:
// 50 healthy keys beside them, among them another app's key of the same
// string as the 503 one, are all delivered while the stuck keys still
// hold theirs. The time beside them against the time alone is logged,
// not asserted (a loaded machine breaks any such bound).
func TestOrderKeyStuckEmbedded(t *testing.T) {
	healthy := append(keyNames("ok-", 49), "stuck-503")
	const events, stuckEvents = 10, 5
	run := func(withStuck bool) time.Duration {
		stuck := map[string]http.HandlerFunc{
			"stuck-503":  func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) },
			"stuck-hang": func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		}
		a := newOrderApp(t, nil, 2*time.Millisecond, nil)
		stuckApp := newOrderApp(t, nil, 0, stuck)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		q, err := natsqueue.Embedded(ctx, t.TempDir(), natsqueue.Options{})
		require.NoError(t, err)
		// App 1 is stuck; app 2 is healthy, at another URL.
		d, err := callback.New(callback.Config{
			Resolver: callback.ResolverFunc(func(_ context.Context, app int) (callback.Endpoint, error) {
				if app == 1 {
					return callback.Endpoint{URL: stuckApp.URL}, nil
				}
				return callback.Endpoint{URL: a.URL}, nil
			}),
			Queue: q.ForDispatcher(), Logger: quiet, Timeout: time.Second,
			RetrySchedule: retryFast, Breaker: callback.Breaker{Disabled: true}, AfterLimit: callback.AfterLimit{Rate: -1},
		})
		require.NoError(t, err)
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = d.Close(ctx)
		}()
		ds := []*callback.Dispatcher{d}
		if withStuck {
			afterKeyed(t, ds, 1, []string{"stuck-503", "stuck-hang"}, stuckEvents)
			seen := map[string]bool{}
			for len(seen) < 2 {
				seen[<-stuckApp.seen] = true
			}
		}
		start := time.Now()
		afterKeyed(t, ds, 2, healthy, events)
		waitWithin(t, "the healthy keys delivered", 60*time.Second, func() bool { return a.count() == len(healthy)*events })
		took := time.Since(start)
		assert.Empty(t, a.problems())
		if withStuck {
			waitWithin(t, "the stuck keys' later events held", 30*time.Second, func() bool { return q.WaitingForKey() == 2*(stuckEvents-1) })
		}
		return took
	}
	alone := run(false)
	beside := run(true)
	t.Logf("50 keys alone: %v; beside two stuck keys: %v (%.2fx)", alone, beside, float64(beside)/float64(alone))
}

// crashApp is the App backend of TestCrashOrdered. It checks each key's
// order as orderApp does, but allows what a crash brings: an event the
// App answered 2xx may come again (the crashed node never acked it), and
// is counted as a duplicate. An event sent before the one ahead of it
// was answered 2xx, or while another of its key is in flight, is a
// violation. Node A's requests past the first beforeCrash are held until
// crashed is closed; those arriving once dead is set are what a crashed
// process would never have sent: they are answered 503 and not counted.
type crashApp struct {
	*httptest.Server
	beforeCrash int32
	crashed     chan struct{}
	dead        atomic.Bool

	fromA      atomic.Int32
	mu         sync.Mutex
	next       map[string]int // key -> number of the next event due
	busy       map[string]bool
	fromB      int
	dups       int
	violations []string
}

func (a *crashApp) serve(w http.ResponseWriter, r *http.Request) {
	var ev keyed
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	node := r.URL.Query().Get("node")
	if node == "a" && a.dead.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	a.mu.Lock()
	if a.busy[ev.K] {
		a.violate(fmt.Sprintf("%s: event %d sent by %s while another of its key was in flight", ev.K, ev.N, node))
	}
	switch due := a.next[ev.K]; {
	case ev.N > due:
		a.violate(fmt.Sprintf("%s: event %d sent by %s when %d was due", ev.K, ev.N, node, due))
	case ev.N < due:
		a.dups++
	}
	a.busy[ev.K] = true
	if node == "b" {
		a.fromB++
	}
	a.mu.Unlock()
	if node == "a" && a.fromA.Add(1) > a.beforeCrash {
		<-a.crashed
	}
	a.mu.Lock()
	a.busy[ev.K] = false
	if ev.N == a.next[ev.K] {
		a.next[ev.K]++
	}
	a.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"code":0}`))
}

// violate notes a violation, with a.mu held; the first 20 are kept.
func (a *crashApp) violate(v string) {
	if len(a.violations) < 20 {
		a.violations = append(a.violations, v)
	}
}

// complete reports whether every key got all its n events, or ends the
// wait at the first violation.
func (a *crashApp) complete(keys []string, n int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.violations) > 0 {
		return true
	}
	for _, k := range keys {
		if a.next[k] != n {
			return false
		}
	}
	return true
}

// TestCrashOrdered is TestCrash with order keys: node A accepts 50 keys'
// 100 events each and its connection is dropped mid-delivery, without
// Close, with requests in flight; node B, started on the same stream,
// delivers the rest. Each key's events reach the App in order, one at a
// time; the events A had in flight come again (at least once), and none
// is lost.
func TestCrashOrdered(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 keyed events through a crashed node: not in -short")
	}
	const perKey = 100
	keys := keyNames("conv-", 50)
	srv := startServer(t, t.TempDir())
	a := &crashApp{beforeCrash: 1000, crashed: make(chan struct{}), next: map[string]int{}, busy: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	var crashOnce sync.Once
	crash := func() { crashOnce.Do(func() { close(a.crashed) }) }
	defer crash()
	opts := natsqueue.Options{AckWait: time.Second}

	ncA := connect(t, srv.ClientURL())
	nodeA := newNode(t, ncA, opts, callback.Config{URL: a.URL + "?node=a", Workers: 8, RetrySchedule: short})
	afterKeyed(t, []*callback.Dispatcher{nodeA.d}, 7, keys, perKey)
	waitFor(t, "node A's deliveries to stall", func() bool { return a.fromA.Load() >= a.beforeCrash+8 })
	a.dead.Store(true) // what A sends from now on, a crashed process would not have
	ncA.Close()        // the crash: no Close, connection dropped mid-delivery
	crash()            // A's requests in flight get their 2xx, which A cannot ack

	ncB := connect(t, srv.ClientURL())
	nodeB := newNode(t, ncB, opts, callback.Config{URL: a.URL + "?node=b", Workers: 16, RetrySchedule: short})
	waitWithin(t, "every keyed event delivered", 120*time.Second, func() bool { return a.complete(keys, perKey) })

	a.mu.Lock()
	require.Empty(t, a.violations)
	assert.Positive(t, a.fromB, "node B delivered nothing")
	assert.GreaterOrEqual(t, a.dups, 8, "got %d events delivered again, want at least A's 8 in flight", a.dups)
	t.Logf("requests from A: %d, from B: %d; %d duplicates", a.fromA.Load(), a.fromB, a.dups)
	a.mu.Unlock()
	require.Eventually(t, func() bool { return nodeB.q.WaitingForKey() == 0 }, 30*time.Second, 10*time.Millisecond)
	nodeA.close(t, time.Second) // reclaim A's goroutines; its connection is gone
}

// Two nodes pulling one event at a time, so that a key's events
// alternate between them, on few keys: most events go after an event
// of their key that the other node settled, so the check that lets
// them go starts after the sequence the other node's wake named, and
// the node's own settles are taken as answered before the server has
// removed them. A third of first attempts fail: a retried event must
// hold its key on both nodes (a retry is no answer). Each key's events
// reach the App one at a time, in order, all of them.
func TestOrderKeyTwoNodesInterleaved(t *testing.T) {
	twoNodesOrdered(t, 3, 2*time.Millisecond, natsqueue.Options{Prefetch: 1}, 4, 150, false)
}

// A work stream made without direct gets (by an earlier version, or an
// operator) is given them when a Queue starts on it: the order keys'
// checks are direct gets.
func TestAllowDirectOnExistingStream(t *testing.T) {
	srv := startServer(t, t.TempDir())
	nc := connect(t, srv.ClientURL())
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "CALLBACK_AFTER", Subjects: []string{"callback.after.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	q, err := natsqueue.New(ctx, nc, natsqueue.Options{Logger: quiet})
	require.NoError(t, err)
	defer func() { require.NoError(t, q.Close()) }()
	s, err := js.Stream(ctx, "CALLBACK_AFTER")
	require.NoError(t, err)
	assert.True(t, s.CachedInfo().Config.AllowDirect)
}

// afterAlternating queues events 0 to n-1 of key of app, in order, each
// through the next of the Dispatchers given in turn: each publish's
// guess of the key's last stored event is the event its node published
// last, which another node's publish has since followed, so JetStream
// refuses it and the event is marked with the sequence the refusal
// names.
func afterAlternating(t testing.TB, ds []*callback.Dispatcher, app int, key string, n int) {
	t.Helper()
	ctx := callback.WithOrderKey(context.Background(), key)
	for i := range n {
		b, _ := json.Marshal(keyed{app, key, i})
		if err := ds[i%len(ds)].After(ctx, app, "group.message.after", b); err != nil {
			t.Errorf("After %s/%d: %v", key, i, err)
			return
		}
	}
}

// Two nodes pulling one event at a time; each key's events are
// published alternately through both, so that each is marked with its
// predecessor (Callback-Key-After) after a refused guess, and the
// predecessor is mostly handed to the other node. The first event of
// each key is answered 503 three times: the events marked behind it wait
// on the other node while it is retried, and every event behind a
// retried one waits likewise (a quarter of first attempts fail). Each
// key's events reach the App one at a time, in order, all of them.
func TestOrderKeyMarkedWaitsForOtherNode(t *testing.T) {
	srv := startServer(t, t.TempDir())
	a := newOrderApp(t, func(keyed) bool { return rand.N(4) == 0 }, 2*time.Millisecond, nil)
	a.refuse = func(ev keyed, tries int) bool { return ev.N == 0 && tries < 3 }
	cfg := func(name string) callback.Config {
		return callback.Config{URL: a.URL + "?node=" + name, RetrySchedule: retryFast, Breaker: callback.Breaker{Disabled: true}, AfterLimit: callback.AfterLimit{Rate: -1}}
	}
	opts := natsqueue.Options{Prefetch: 1}
	nodeA := newNode(t, connect(t, srv.ClientURL()), opts, cfg("a"))
	nodeB := newNode(t, connect(t, srv.ClientURL()), opts, cfg("b"))
	ds := []*callback.Dispatcher{nodeA.d, nodeB.d}
	const keys, events = 4, 60
	var wg sync.WaitGroup
	for _, k := range keyNames("conv-", keys) {
		wg.Go(func() { afterAlternating(t, ds, 7, k, events) })
	}
	wg.Wait()
	checkTwoNodesDelivered(t, a, nodeA, nodeB, keys*events)
}

// checkTwoNodesDelivered waits for the App to have every one of n keyed
// events, checks that none came out of its key's order, that both nodes
// delivered some, and that neither holds an event any longer.
func checkTwoNodesDelivered(t *testing.T, a *orderApp, nodeA, nodeB *node, n int) {
	t.Helper()
	waitWithin(t, "every keyed event delivered", 120*time.Second, func() bool { return a.count() == n })
	assert.Empty(t, a.problems())
	nodes := a.byNode()
	assert.Positive(t, nodes["a"], "node a delivered nothing")
	assert.Positive(t, nodes["b"], "node b delivered nothing")
	t.Logf("delivered by node: %v", nodes)
	require.Eventually(t, func() bool { return nodeA.q.WaitingForKey()+nodeB.q.WaitingForKey() == 0 }, 30*time.Second, 10*time.Millisecond)
}

// storedOnKey returns the messages the work stream stores on the subject
// of app's order key, in their order.
func storedOnKey(t testing.TB, js jetstream.JetStream, app int, key string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, "CALLBACK_AFTER")
	require.NoError(t, err)
	subject := keySubject(app, key)
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		require.NoError(t, err)
		out = append(out, raw)
		seq = raw.Sequence + 1
	}
}

// keySubject returns the work stream's subject of app's order key.
func keySubject(app int, key string) string {
	h := sha256.Sum256([]byte(key))
	return fmt.Sprintf("callback.after.%d.k.%s", app, hex.EncodeToString(h[:16]))
}

// A wake that claims more than was answered (forged by anyone allowed to
// publish on the wake subject, or mistaken) must make no node drop an
// event. A node holds a key's events behind the first, which the App
// holds; the node takes a wake saying that the key is answered far past
// them, then the App answers. Every event must arrive: before doneHere,
// the held events were acked unsent and never arrived.
func TestForgedWakeDropsNothing(t *testing.T) {
	srv := startServer(t, t.TempDir())
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[int]bool{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev keyed
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if ev.N == 0 {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		mu.Lock()
		seen[ev.N] = true
		mu.Unlock()
		_, _ = w.Write([]byte(`{"code":0}`))
	}))
	t.Cleanup(app.Close)
	released := sync.OnceFunc(func() { close(release) })
	defer released()
	cfg := callback.Config{URL: app.URL, Timeout: 5 * time.Minute, RetrySchedule: retryFast,
		Breaker: callback.Breaker{Disabled: true}, AfterLimit: callback.AfterLimit{Rate: -1}}
	n := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg)
	const key, events = "conv-1", 10
	ctx := callback.WithOrderKey(context.Background(), key)
	for i := range events {
		b, _ := json.Marshal(keyed{7, key, i})
		require.NoError(t, n.d.After(ctx, 7, "group.message.after", b))
	}
	waitWithin(t, "the key's later events held behind the first", 60*time.Second, func() bool {
		return n.q.WaitingForKey() == events-1
	})
	n.q.Woken([]byte(keySubject(7, key) + " 1000000\n"))
	released()
	waitWithin(t, "every event answered", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == events
	})
}

// A keyed publish whose guess of the key's last stored event is wrong is
// refused, and published again marked with the event the refusal names,
// or, refused again, unmarked. While the App holds the key's first event
// (nothing is removed), every stored event's mark must name the event
// stored before it on the key's subject (0 for the first): a mark left
// from a refused guess, or one taken from a refusal other than the
// event's own, fails. Two nodes publish the key's events alternately
// (every guess but the first is refused once), then from eight
// goroutines at once, four on each node (a node publishes one event of
// a key at a time, so guesses are refused for the other node's events,
// some twice). Once the App
// answers, the events arrive in the order the stream stored them, one at
// a time, unmarked ones included.
func TestOrderKeyRefusedMark(t *testing.T) {
	srv := startServer(t, t.TempDir())
	release := make(chan struct{})
	var mu sync.Mutex
	var got []int // event numbers, in the order the App answered them 2xx
	inFlight := atomic.Int32{}
	overlap := atomic.Bool{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev keyed
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if inFlight.Add(1) > 1 {
			overlap.Store(true)
		}
		defer inFlight.Add(-1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		mu.Lock()
		got = append(got, ev.N)
		mu.Unlock()
		_, _ = w.Write([]byte(`{"code":0}`))
	}))
	t.Cleanup(app.Close)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	cfg := callback.Config{URL: app.URL, Timeout: 5 * time.Minute, RetrySchedule: retryFast,
		Breaker: callback.Breaker{Disabled: true}, AfterLimit: callback.AfterLimit{Rate: -1}}
	nodeA := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg)
	nodeB := newNode(t, connect(t, srv.ClientURL()), natsqueue.Options{}, cfg)
	ds := []*callback.Dispatcher{nodeA.d, nodeB.d}
	const key, alternating, concurrent = "conv-1", 20, 200
	afterAlternating(t, ds, 7, key, alternating)
	var next atomic.Int64
	next.Store(alternating - 1)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			ctx := callback.WithOrderKey(context.Background(), key)
			for i := next.Add(1); i < alternating+concurrent; i = next.Add(1) {
				b, _ := json.Marshal(keyed{7, key, int(i)})
				if err := ds[g%2].After(ctx, 7, "group.message.after", b); err != nil {
					t.Errorf("After %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()

	js, err := jetstream.New(connect(t, srv.ClientURL()))
	require.NoError(t, err)
	stored := storedOnKey(t, js, 7, key)
	require.Len(t, stored, alternating+concurrent, "the App answered none: every event is stored")
	var order []int
	prev, unmarked := uint64(0), 0
	for i, raw := range stored {
		var ev keyed
		require.NoError(t, json.Unmarshal(raw.Data, &ev))
		order = append(order, ev.N)
		if i < alternating {
			require.Equal(t, i, ev.N, "the alternating events are stored in order")
		}
		mark := raw.Header.Get("Callback-Key-After")
		if mark == "" {
			unmarked++
			require.GreaterOrEqual(t, i, alternating, "event %d unmarked: an alternating publish is refused once at most", ev.N)
		} else {
			require.Equal(t, strconv.FormatUint(prev, 10), mark, "the mark of event %d (sequence %d)", ev.N, raw.Sequence)
		}
		prev = raw.Sequence
	}
	t.Logf("%d events stored, %d unmarked", len(stored), unmarked)

	close(release)
	waitWithin(t, "every event answered", 120*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(order)
	})
	mu.Lock()
	assert.Equal(t, order, got, "answered in the order the stream stored them")
	mu.Unlock()
	assert.False(t, overlap.Load(), "two attempts of the key in flight at once")
}

package natsqueue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cluster is a JetStream cluster of servers in the test process, with
// routes on loopback and fixed ports, so that a server shut down can be
// started again on its store and its clients find it.
type cluster struct {
	t    *testing.T
	opts []*server.Options
	mu   sync.Mutex
	srvs []*server.Server // nil while down
}

// startCluster starts a cluster of n servers and shuts it down at the end
// of the test.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	ports := stablePorts(t, 2*n)
	var routes []string
	for _, p := range ports[n:] {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &cluster{t: t, srvs: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("s%d", i),
			Host:       "127.0.0.1", Port: ports[i],
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "callback", Host: "127.0.0.1", Port: ports[n+i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
			NoSigs:  true, NoLog: true,
		})
	}
	t.Cleanup(func() {
		for i := range n {
			c.stop(i)
		}
	})
	for i := range n {
		c.launch(i)
	}
	for i := range n {
		c.ready(i)
	}
	return c
}

// stablePorts returns n loopback ports free at the time of the call, below
// Linux's range of ephemeral ports (32768 and up), so that no outgoing
// connection takes one while its server is down for a restart.
func stablePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for p := 10000 + rand.IntN(20000); len(ports) < n; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken
		}
		defer l.Close()
		ports = append(ports, p)
	}
	return ports
}

// launch starts server i on its options and store.
func (c *cluster) launch(i int) {
	c.t.Helper()
	o := *c.opts[i] // NewServer keeps and changes what it is given
	o.Routes = slices.Clone(o.Routes)
	srv, err := server.NewServer(&o)
	require.NoError(c.t, err)
	srv.Start()
	c.mu.Lock()
	c.srvs[i] = srv
	c.mu.Unlock()
}

// ready waits for server i to take clients.
func (c *cluster) ready(i int) {
	c.t.Helper()
	require.True(c.t, c.server(i).ReadyForConnections(10*time.Second), "server s%d not ready", i)
}

// start starts server i again and waits until it is ready.
func (c *cluster) start(i int) {
	c.t.Helper()
	c.launch(i)
	c.ready(i)
}

// stop shuts server i down, if it runs.
func (c *cluster) stop(i int) {
	c.mu.Lock()
	srv := c.srvs[i]
	c.srvs[i] = nil
	c.mu.Unlock()
	if srv != nil {
		shutdown(srv)
	}
}

func (c *cluster) server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srvs[i]
}

// index returns the index of the running server called name, or -1.
func (c *cluster) index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name && c.server(i) != nil {
			return i
		}
	}
	return -1
}

// urls returns the client URLs of the servers, starting from server
// first.
func (c *cluster) urls(first int) string {
	var urls []string
	for k := range c.opts {
		o := c.opts[(first+k)%len(c.opts)]
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(urls, ",")
}

// leaders returns the servers leading the queue's stream and its consumer
// as the JetStream API reports them, -1 for one that has no leader or
// none running.
func (c *cluster) leaders(js jetstream.JetStream) (stream, consumer int) {
	stream, consumer = -1, -1
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "CALLBACK_AFTER")
	if err != nil || s.CachedInfo().Cluster == nil {
		return
	}
	stream = c.index(s.CachedInfo().Cluster.Leader)
	cons, err := s.Consumer(ctx, "callback")
	if err != nil || cons.CachedInfo().Cluster == nil {
		return
	}
	return stream, c.index(cons.CachedInfo().Cluster.Leader)
}

// led waits until the stream and the consumer both have a running leader
// and returns when that was seen.
func (c *cluster) led(js jetstream.JetStream) time.Time {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s, cons := c.leaders(js); s >= 0 && cons >= 0 {
			return time.Now()
		}
		require.False(c.t, time.Now().After(deadline), "no stream and consumer leaders within 60 s")
		time.Sleep(50 * time.Millisecond)
	}
}

// healthy waits until every running server is caught up with the
// cluster's JetStream state.
func (c *cluster) healthy() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := range c.opts {
		for srv := c.server(i); srv != nil && srv.Healthz(nil).Status != "ok"; {
			require.False(c.t, time.Now().After(deadline), "server s%d not healthy within 60 s: %v", i, srv.Healthz(nil).Error)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// outage is a time during which the cluster could not store or hand out
// events: from a server's loss to the queue's stream and consumer having
// leaders again.
type outage struct{ from, to time.Time }

// TestFailover runs the cluster's fail-over scenarios: three servers, R3
// streams, two nodes on connections to different servers, events sent all
// along. In each one every event for which After returned nil is
// delivered, a webhook-id is never sent with another event's body, both
// nodes deliver again, and no event waits more than 30 s for delivery
// outside the time the stream or the consumer had no leader.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("four three-server clusters failing over: not in -short")
	}
	tests := []struct {
		name    string
		disrupt func(t *testing.T, c *cluster, js jetstream.JetStream) []outage
	}{
		{"stream leader", func(t *testing.T, c *cluster, js jetstream.JetStream) []outage {
			s, _ := c.leaders(js)
			require.GreaterOrEqual(t, s, 0, "no stream leader")
			t.Logf("shutting down s%d, the stream's leader", s)
			down := time.Now()
			c.stop(s)
			return []outage{{down, c.led(js)}}
		}},
		{"consumer leader", func(t *testing.T, c *cluster, js jetstream.JetStream) []outage {
			s, cons := c.leaders(js)
			require.GreaterOrEqual(t, cons, 0, "no consumer leader")
			t.Logf("shutting down s%d, the consumer's leader (the stream's: s%d)", cons, s)
			down := time.Now()
			c.stop(cons)
			return []outage{{down, c.led(js)}}
		}},
		{"rolling restart", func(t *testing.T, c *cluster, js jetstream.JetStream) []outage {
			var outs []outage
			for i := range c.opts {
				t.Logf("restarting s%d", i)
				down := time.Now()
				c.stop(i)
				c.start(i)
				outs = append(outs, outage{down, c.led(js)})
				c.healthy() // as an operator would before the next one
			}
			return outs
		}},
		{"quorum lost", func(t *testing.T, c *cluster, js jetstream.JetStream) []outage {
			s, _ := c.leaders(js)
			require.GreaterOrEqual(t, s, 0, "no stream leader")
			other := (s + 1) % len(c.opts)
			t.Logf("shutting down s%d (the stream's leader) and s%d", s, other)
			down := time.Now()
			c.stop(s)
			c.stop(other)
			time.Sleep(3 * time.Second) // the outage itself, not a wait for a condition
			c.start(s)
			c.start(other)
			t.Logf("quorum back after %v", time.Since(down).Round(time.Millisecond))
			return []outage{{down, c.led(js)}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			failover(t, tt.disrupt)
		})
	}
}

// testWriter writes the queue's log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// failoverNodes starts two nodes on cluster c, a and b, first connected
// to servers 0 and 1 and delivering to url, and a JetStream client on
// server 2 for the test's own look at the streams. A node rides out a
// fail-over in After (PublishTimeout over the servers' election timeout)
// and gets lost acks' events back soon (AckWait).
func failoverNodes(t *testing.T, c *cluster, url string) ([]*node, jetstream.JetStream) {
	t.Helper()
	opts := natsqueue.Options{Replicas: 3, AckWait: 2 * time.Second, PublishTimeout: 20 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	conn := func(first int) *nats.Conn {
		return connect(t, c.urls(first), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	}
	ncA, ncB := conn(0), conn(1)
	// The streams can be made once the cluster has its JetStream leader,
	// which a loaded machine may take a while to elect.
	waitWithin(t, "the JetStream cluster", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		q, err := natsqueue.New(ctx, ncA, opts)
		if err == nil {
			require.NoError(t, q.Close())
		}
		return err == nil
	})
	cfg := func(name string) callback.Config {
		return callback.Config{URL: url + "?node=" + name, Workers: 4, RetrySchedule: short}
	}
	nodes := []*node{newNode(t, ncA, opts, cfg("a")), newNode(t, ncB, opts, cfg("b"))}
	js, err := jetstream.New(connect(t, c.urls(2), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond)))
	require.NoError(t, err)
	return nodes, js
}

// sent is what After returned for an event: when, and its error.
type sent struct {
	at  time.Time
	err error
}

func failover(t *testing.T, disrupt func(*testing.T, *cluster, jetstream.JetStream) []outage) {
	c := startCluster(t, 3)
	a := newApp(t, func(hit, int) int { return http.StatusOK })
	nodes, js := failoverNodes(t, c, a.URL)

	// Senders: four per node, each an event every 10 ms at most, until
	// stop is closed.
	var (
		mu     sync.Mutex
		events []sent
		wg     sync.WaitGroup
		stop   = make(chan struct{})
	)
	next := func() int {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, sent{})
		return len(events) - 1
	}
	for _, n := range nodes {
		for range 4 {
			wg.Go(func() {
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					i := next()
					err := n.d.After(context.Background(), 1, "message.send.after", body(i))
					mu.Lock()
					events[i] = sent{time.Now(), err}
					mu.Unlock()
				}
			})
		}
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// Four clusters of three servers run at once: on a loaded machine the
	// first 200 deliveries may take a while; only a hang takes a minute.
	waitWithin(t, "deliveries before the disruption", time.Minute, func() bool { return a.delivered() >= 200 })
	outs := disrupt(t, c, js)
	for _, o := range outs {
		t.Logf("outage of %v", o.to.Sub(o.from).Round(time.Millisecond))
	}
	// Events go on after it; then every accepted one must be delivered.
	last := outs[len(outs)-1].to
	after := a.delivered()
	// Each node must take part again, not one alone: each delivers events
	// accepted after the outage, which it cannot have pulled before.
	waitWithin(t, "deliveries by both nodes after the disruption", time.Minute, func() bool {
		byNode := map[string]int{}
		hits := a.snapshot()
		mu.Lock()
		for _, h := range hits {
			if e := events[number(t, h.body)]; e.err == nil && e.at.After(last) {
				byNode[h.node]++
			}
		}
		mu.Unlock()
		return a.delivered() >= after+200 && byNode["a"] > 0 && byNode["b"] > 0
	})
	close(stop)
	wg.Wait()

	var accepted []int
	failed := 0
	whys := map[string]int{}
	for i, e := range events {
		if e.err == nil {
			accepted = append(accepted, i)
		} else {
			failed++
			whys[e.err.Error()]++
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, i := range accepted {
		for {
			if _, ok := a.deliveredAt(string(body(i))); ok {
				break
			}
			if time.Now().After(deadline) {
				require.FailNowf(t, "lost", "event %d, accepted %v after the last outage ended, not delivered a minute later",
					i, events[i].at.Sub(last).Round(time.Millisecond))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Each event's wait for delivery, outside the outages.
	var worst, worstRaw time.Duration
	worstAt := 0
	for _, i := range accepted {
		got, _ := a.deliveredAt(string(body(i)))
		wait := got.Sub(events[i].at)
		worstRaw = max(worstRaw, wait)
		for _, o := range outs {
			from, to := o.from, o.to
			if events[i].at.After(from) {
				from = events[i].at
			}
			if got.Before(to) {
				to = got
			}
			if to.After(from) {
				wait -= to.Sub(from)
			}
		}
		if wait > worst {
			worst, worstAt = wait, i
		}
	}
	if len(accepted) > 0 {
		got, _ := a.deliveredAt(string(body(worstAt)))
		t.Logf("the longest wait outside the outages: event %d, accepted %v and delivered %v after the last outage ended",
			worstAt, events[worstAt].at.Sub(last).Round(time.Millisecond), got.Sub(last).Round(time.Millisecond))
	}
	// A webhook-id belongs to one event; an event has more than one only
	// if After failed for it once and it was sent again.
	bodyOf := map[string]string{}
	dups := 0
	for _, h := range a.snapshot() {
		if b, ok := bodyOf[h.id]; ok {
			assert.Equal(t, b, h.body, "webhook-id %s sent with two bodies", h.id)
			dups++
		}
		bodyOf[h.id] = h.body
	}
	t.Logf("events: %d accepted, %d After errors; %d requests repeated a webhook-id; longest wait for delivery: %v, %v of it outside the outages",
		len(accepted), failed, dups, worstRaw.Round(time.Millisecond), worst.Round(time.Millisecond))
	assert.Zero(t, failed, "After failed although PublishTimeout covers the fail-over: %v", whys)
	// Lost acks' events come back after AckWait (2 s); the bound is far
	// above it, so only delivery that does not resume reaches it.
	assert.LessOrEqual(t, worst, 30*time.Second, "delivery did not resume within 30 s of the outage's end")
}

// failoverApp is the App backend of TestFailoverOrdered. Each key's
// events are numbered from 0 by one sender, which records whether After
// accepted each before it sends the next. An event of a key may reach
// the App only once every earlier accepted event of the key has been
// answered 2xx; an event After refused may or may not have been stored,
// so it is neither waited for nor required. Redeliveries are allowed.
type failoverApp struct {
	*httptest.Server
	mu         sync.Mutex
	refused    map[string]map[int]bool // key -> numbers After refused
	accepted   map[string]int          // key -> events After accepted
	delivered  map[string]map[int]bool
	count      int // 2xx answers
	violations []string
}

func newFailoverApp(t *testing.T) *failoverApp {
	a := &failoverApp{refused: map[string]map[int]bool{}, accepted: map[string]int{}, delivered: map[string]map[int]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev keyed
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		for m := range ev.N {
			if !a.refused[ev.K][m] && !a.delivered[ev.K][m] && len(a.violations) < 20 {
				a.violations = append(a.violations, fmt.Sprintf("%s: event %d sent before event %d was delivered", ev.K, ev.N, m))
				break
			}
		}
		if a.delivered[ev.K] == nil {
			a.delivered[ev.K] = map[int]bool{}
		}
		a.delivered[ev.K][ev.N] = true
		a.count++
		a.mu.Unlock()
		_, _ = w.Write([]byte(`{"code":0}`))
	}))
	t.Cleanup(a.Close)
	return a
}

// sent notes After's answer to event n of key.
func (a *failoverApp) sent(key string, n int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if a.refused[key] == nil {
			a.refused[key] = map[int]bool{}
		}
		a.refused[key][n] = true
		return
	}
	a.accepted[key]++
}

func (a *failoverApp) answered() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count
}

// missing returns how many accepted events are not delivered yet.
func (a *failoverApp) missing() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for k, acc := range a.accepted {
		got := 0
		for m := range a.delivered[k] {
			if !a.refused[k][m] {
				got++
			}
		}
		n += acc - got
	}
	return n
}

// TestFailoverOrdered: the stream's leader of a three-server cluster is
// shut down while two nodes deliver keyed events, sent all along by
// eight senders of a key each (one every 40 ms); every accepted event is
// delivered, and none of a key's before an earlier accepted one of the
// key.
func TestFailoverOrdered(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster failing over: not in -short")
	}
	c := startCluster(t, 3)
	a := newFailoverApp(t)
	nodes, js := failoverNodes(t, c, a.URL)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		n, key := nodes[i%2], fmt.Sprintf("conv-%d", i)
		wg.Go(func() {
			ctx := callback.WithOrderKey(context.Background(), key)
			tick := time.NewTicker(40 * time.Millisecond) // 200 events/s in all, which keyed delivery here keeps up with
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				b, _ := json.Marshal(keyed{1, key, seq})
				a.sent(key, seq, n.d.After(ctx, 1, "group.message.after", b))
			}
		})
	}
	stopSending := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopSending()

	waitWithin(t, "deliveries before the disruption", time.Minute, func() bool { return a.answered() >= 200 })
	s, _ := c.leaders(js)
	require.GreaterOrEqual(t, s, 0, "no stream leader")
	t.Logf("shutting down s%d, the stream's leader; %d events not delivered yet", s, a.missing())
	down := time.Now()
	c.stop(s)
	t.Logf("outage of %v", c.led(js).Sub(down).Round(time.Millisecond))
	after := a.answered()
	waitWithin(t, "deliveries after the disruption", time.Minute, func() bool { return a.answered() >= after+200 })
	stopSending()
	t.Logf("sending stopped %v after the outage began, %d events not delivered yet", time.Since(down).Round(time.Millisecond), a.missing())
	waitWithin(t, "every accepted event delivered", 3*time.Minute, func() bool { return a.missing() == 0 })
	t.Logf("all delivered %v after the outage began", time.Since(down).Round(time.Millisecond))

	a.mu.Lock()
	defer a.mu.Unlock()
	assert.Empty(t, a.violations)
	refused := 0
	for _, r := range a.refused {
		refused += len(r)
	}
	t.Logf("%d answers, %d events refused by After", a.count, refused)
}

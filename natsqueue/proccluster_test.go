package natsqueue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// procServerEnv, set in the environment of the test binary, makes it a
// NATS server process (TestMain) configured by the variable's JSON.
const procServerEnv = "NATSQUEUE_TEST_SERVER"

// procServer is the configuration of one server process.
type procServer struct {
	Name        string
	Port        int
	ClusterPort int
	Routes      string
	Dir         string
}

// runProcServer runs a NATS server of the cluster until the process is
// killed.
func runProcServer(cfg string) {
	var p procServer
	if err := json.Unmarshal([]byte(cfg), &p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: p.Name, Host: "127.0.0.1", Port: p.Port,
		JetStream: true, StoreDir: p.Dir,
		Cluster: server.ClusterOpts{Name: "callback", Host: "127.0.0.1", Port: p.ClusterPort},
		Routes:  server.RoutesFromStr(p.Routes),
		NoSigs:  true, NoLog: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	srv.Start()
	srv.WaitForShutdown() // never: the test kills the process
}

// procCluster is a JetStream cluster of servers each in its own process,
// so that one can be hung with SIGSTOP.
type procCluster struct {
	ports []int
	cmds  []*exec.Cmd
}

// startProcCluster starts n server processes and kills them at the end of
// the test.
func startProcCluster(t *testing.T, n int) *procCluster {
	t.Helper()
	ports := stablePorts(t, 2*n)
	var routes []string
	for _, p := range ports[n:] {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &procCluster{ports: ports[:n]}
	for i := range n {
		cfg, err := json.Marshal(procServer{fmt.Sprintf("s%d", i), ports[i], ports[n+i], strings.Join(routes, ","), t.TempDir()})
		require.NoError(t, err)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), procServerEnv+"="+string(cfg))
		require.NoError(t, cmd.Start())
		c.cmds = append(c.cmds, cmd)
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	for _, p := range c.ports {
		waitWithin(t, fmt.Sprintf("server on port %d", p), time.Minute, func() bool {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
	return c
}

// urls returns the client URLs, starting from server first.
func (c *procCluster) urls(first int) string {
	var urls []string
	for k := range c.ports {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", c.ports[(first+k)%len(c.ports)]))
	}
	return strings.Join(urls, ",")
}

// TestHungServerProcess: three NATS servers in separate processes; the
// one a node is connected to is hung with SIGSTOP for 15 s under load.
// The node leaves it (natsqueue forces a reconnect) and delivers events
// sent after the hang began while the server is still stopped, and no
// event accepted by After is lost.
func TestHungServerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-process cluster with a server hung for 15 s: not in -short")
	}
	const hang = 15 * time.Second
	c := startProcCluster(t, 3)
	a := newApp(t, func(hit, int) int { return http.StatusOK })
	opts := natsqueue.Options{Replicas: 3, AckWait: 2 * time.Second, PublishTimeout: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	conn := func(first int) *nats.Conn {
		return connect(t, c.urls(first), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	}
	ncA := conn(0)
	waitWithin(t, "the JetStream cluster", time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		q, err := natsqueue.New(ctx, ncA, opts)
		if err == nil {
			require.NoError(t, q.Close())
		}
		return err == nil
	})
	ncB := conn(1)
	cfg := func(name string) callback.Config {
		return callback.Config{URL: a.URL + "?node=" + name, Workers: 4, RetrySchedule: short}
	}
	nodes := []*node{newNode(t, ncA, opts, cfg("a")), newNode(t, ncB, opts, cfg("b"))}

	// Senders: two per node, an event every 10 ms at most each.
	type call struct {
		called time.Time
		err    error
	}
	var (
		mu     sync.Mutex
		events []call
		wg     sync.WaitGroup
		stop   = make(chan struct{})
	)
	for _, n := range nodes {
		for range 2 {
			wg.Go(func() {
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					mu.Lock()
					i := len(events)
					events = append(events, call{called: time.Now()})
					mu.Unlock()
					err := n.d.After(context.Background(), 1, "message.send.after", body(i))
					mu.Lock()
					events[i].err = err
					mu.Unlock()
				}
			})
		}
	}
	stopSenders := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopSenders()
	waitWithin(t, "deliveries before the hang", time.Minute, func() bool { return a.delivered() >= 200 })

	hung := -1
	for i, p := range c.ports {
		if strings.HasSuffix(ncA.ConnectedUrl(), fmt.Sprintf(":%d", p)) {
			hung = i
		}
	}
	require.GreaterOrEqual(t, hung, 0, "node a's server among %v: %s", c.ports, ncA.ConnectedUrl())
	t.Logf("stopping s%d, node a's server, for %v", hung, hang)
	stoppedAt := time.Now()
	require.NoError(t, c.cmds[hung].Process.Signal(syscall.SIGSTOP))
	// Node a delivers an event that was sent after the hang began: one it
	// can only have pulled from a live server.
	resumed := func() (time.Time, bool) {
		hits := a.snapshot()
		mu.Lock()
		defer mu.Unlock()
		for _, h := range hits {
			if h.node == "a" && events[number(t, h.body)].called.After(stoppedAt) {
				return h.at, true
			}
		}
		return time.Time{}, false
	}
	var at time.Time
	for time.Since(stoppedAt) < hang { // the hang lasts its 15 s
		time.Sleep(50 * time.Millisecond)
		if at.IsZero() {
			at, _ = resumed()
		}
	}
	require.NoError(t, c.cmds[hung].Process.Signal(syscall.SIGCONT))
	t.Logf("server continued after %v", time.Since(stoppedAt).Round(time.Millisecond))
	require.False(t, at.IsZero(), "node a delivered nothing sent after its server hung, during the %v hang", hang)
	t.Logf("node a delivered again %v after its server hung", at.Sub(stoppedAt).Round(time.Millisecond))

	waitWithin(t, "deliveries after the hang", time.Minute, func() bool { return a.delivered() >= 400 })
	stopSenders()
	accepted, failed := 0, 0
	whys := map[string]int{}
	deadline := time.Now().Add(time.Minute)
	for i, e := range events {
		if e.err != nil {
			failed++
			whys[e.err.Error()]++
			continue
		}
		accepted++
		for {
			if _, ok := a.deliveredAt(string(body(i))); ok {
				break
			}
			require.False(t, time.Now().After(deadline), "event %d accepted and lost", i)
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("events: %d accepted and delivered, %d After errors: %v", accepted, failed, whys)
	assert.Zero(t, failed, "After failed although PublishTimeout covers the election: %v", whys)
}

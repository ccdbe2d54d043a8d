package natsqueue_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
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

// startCluster starts a JetStream cluster of n servers in the test
// process, with routes on loopback, and shuts it down at the end of the
// test.
func startCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	ports := freePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	srvs := make([]*server.Server, n)
	for i := range srvs {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("s%d", i),
			Host:       "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "callback", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
			NoSigs:  true, NoLog: true,
		})
		require.NoError(t, err)
		srv.Start()
		t.Cleanup(func() { shutdown(srv) })
		srvs[i] = srv
	}
	for _, srv := range srvs {
		require.True(t, srv.ReadyForConnections(10*time.Second), "server %s not ready", srv.Name())
	}
	return srvs
}

// TestCluster: a three-server cluster, streams with three replicas; one
// server is shut down while events are sent and delivered, and every
// event is delivered.
func TestCluster(t *testing.T) {
	const events = 2000
	srvs := startCluster(t, 3)
	var urls []string
	for _, srv := range srvs {
		urls = append(urls, srv.ClientURL())
	}
	a := newApp(t, func(hit, int) int {
		time.Sleep(200 * time.Microsecond)
		return http.StatusOK
	})
	nc := connect(t, strings.Join(urls, ","), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))

	// Wait for the cluster to elect its JetStream leader: until then the
	// streams cannot be made.
	var q *natsqueue.Queue
	waitFor(t, "the JetStream cluster", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		q, err = natsqueue.New(ctx, nc, natsqueue.Options{Replicas: 3, AckWait: 2 * time.Second})
		return err == nil
	})
	d, err := callback.New(callback.Config{URL: a.URL, Queue: q, Logger: quiet, RetrySchedule: short})
	require.NoError(t, err)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, d.Close(ctx))
	}()

	// Take down the stream's leader midway, while events are sent and
	// delivered.
	// An After that fails during the fail-over is retried by the caller,
	// as an IM server would: what After accepted must not be lost.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	retried := 0
	for i := range events {
		if i == events/2 {
			leader := streamLeader(t, nc, srvs)
			t.Logf("shutting down %s, the stream's leader, after %d delivered", leader.Name(), a.delivered())
			shutdown(leader)
		}
		for {
			err := d.After(ctx, 1, "message.send.after", body(i))
			if err == nil {
				break
			}
			require.NoError(t, ctx.Err(), "After(%d) kept failing: %v", i, err)
			retried++
			time.Sleep(20 * time.Millisecond)
		}
	}
	a.waitDelivered(t, events, 60*time.Second)
	t.Logf("leader now %s", streamLeader(t, nc, srvs).Name())
	t.Logf("After calls retried during the fail-over: %d", retried)
}

// streamLeader returns the server leading the queue's stream.
func streamLeader(t *testing.T, nc *nats.Conn, srvs []*server.Server) *server.Server {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	var name string
	waitFor(t, "a stream leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "CALLBACK_AFTER")
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		name = s.CachedInfo().Cluster.Leader
		return name != ""
	})
	for _, srv := range srvs {
		if srv.Name() == name {
			return srv
		}
	}
	require.FailNow(t, "no server named "+name)
	return nil
}

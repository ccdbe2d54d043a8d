package natsqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startTimeout bounds how long Embedded waits for its server to be ready.
const startTimeout = 10 * time.Second

// Embedded starts a NATS server inside the process, with JetStream storing
// in dir (created if missing), and returns a Queue on it: durable After
// delivery for a single node with no other service. The server listens on
// no port; only this process reaches it. Events stored by an earlier run
// on the same dir are delivered after the restart, those that its Close
// handed back at once. Closing the Queue
// (Dispatcher.Close does) closes the connection and shuts the server down.
//
// Only one process may use dir at a time. For several nodes, run a NATS
// cluster and use New.
func Embedded(ctx context.Context, dir string, o Options) (*Queue, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: no store directory", ErrInvalidOptions)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "imcallback-embedded",
		DontListen: true,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("natsqueue: embedded server: %w", err)
	}
	srv.Start()
	stop := func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
	if !srv.ReadyForConnections(startTimeout) {
		stop()
		return nil, fmt.Errorf("natsqueue: embedded server not ready after %v", startTimeout)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("imcallback"))
	if err != nil {
		stop()
		return nil, fmt.Errorf("natsqueue: embedded server: %w", err)
	}
	q, err := New(ctx, nc, o)
	if err != nil {
		nc.Close()
		stop()
		return nil, err
	}
	q.release = func() {
		nc.Close()
		stop()
	}
	return q, nil
}

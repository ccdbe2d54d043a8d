package natsqueue

import (
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
)

// missedHeartbeat tells the watcher that the consumer missed its
// heartbeats (err), so that it checks the server (checkServer). It never
// waits: nats.go calls it from its own goroutine.
func (q *Queue) missedHeartbeat(err error) {
	if !errors.Is(err, jetstream.ErrNoHeartbeat) {
		return
	}
	select {
	case q.silent <- struct{}{}:
	default: // a check is pending already
	}
}

// checkServer runs in the watcher after missed heartbeats. On a
// connection nats.go still holds as connected, it asks the server for a
// PING answer (a flush); a server that gives none within two heartbeats
// is hung — its TCP connection open, nothing answered, as a SIGSTOPped
// process — and pulling again over it would deliver nothing until
// nats.go's own pings gave up on it (2 minutes by default). The
// connection is then moved to another server at once. A server that
// answers (the consumer only lost its leader, say) is left alone: the
// consumption pulls again by itself.
func (q *Queue) checkServer() {
	if q.stopped.Load() || !q.nc.IsConnected() {
		return // nats.go is reconnecting already, or the queue is done
	}
	err := q.nc.FlushTimeout(2 * q.o.Heartbeat)
	if err == nil || !q.nc.IsConnected() || q.stopped.Load() {
		return
	}
	q.o.Logger.Warn("natsqueue: server not answering, reconnecting to another",
		slog.String("consumer", q.o.Consumer), slog.String("server", q.nc.ConnectedUrlRedacted()),
		slog.String("error", err.Error()))
	if err := q.nc.ForceReconnect(); err != nil {
		q.o.Logger.Error("natsqueue: reconnect failed", slog.String("error", err.Error()))
	}
}

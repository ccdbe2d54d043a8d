package natsqueue

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// handBackBody is the ack of a hand-back: a Nak with handBackDelay, in
// JetStream's ack protocol (what nats.go's NakWithDelay sends).
var handBackBody = fmt.Appendf(nil, `-NAK {"delay": %d}`, handBackDelay.Nanoseconds())

// handBacks counts the hand-backs the server has confirmed. JetStream
// processes acks asynchronously, after they reached it: a server that
// shuts down right after (an Embedded queue's Close) drops those it has
// not processed yet, and their events wait for AckWait instead of coming
// back at once. So each hand-back asks for the server's reply (as nats.go's
// DoubleAck does for an ack, which it has not for a Nak), and Close waits
// for the replies. They come to one inbox, so that the hand-backs of the
// events pulled ahead need not wait for each other.
type handBacks struct {
	inbox     string
	sub       *nats.Subscription
	sent      atomic.Int64
	confirmed atomic.Int64
	progress  chan struct{} // signalled on each reply
}

// start subscribes to the replies of hand-backs.
func (h *handBacks) start(nc *nats.Conn) error {
	h.inbox = nc.NewRespInbox()
	h.progress = make(chan struct{}, 1)
	sub, err := nc.Subscribe(h.inbox, func(*nats.Msg) {
		h.confirmed.Add(1)
		select {
		case h.progress <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("natsqueue: hand-back replies: %w", err)
	}
	h.sub = sub
	return nil
}

// handBack returns an event to the server for redelivery at once, in a way
// that survives a leader change or a restart (handBackDelay); Close waits
// for the server to confirm it.
func (q *Queue) handBack(msg jetstream.Msg) error {
	q.backs.sent.Add(1)
	if err := q.nc.PublishRequest(msg.Reply(), q.backs.inbox, handBackBody); err != nil {
		q.backs.sent.Add(-1) // never sent: the event comes back after AckWait
		return err
	}
	return nil
}

// waitHandBacks waits until the server has confirmed every hand-back sent
// or until deadline: without the server they cannot be, and those events
// come back after AckWait. It then stops listening for replies.
func (q *Queue) waitHandBacks(deadline time.Time) {
	h := &q.backs
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for h.confirmed.Load() < h.sent.Load() {
		select {
		case <-h.progress:
		case <-t.C:
			q.o.Logger.Warn("natsqueue: hand-backs not confirmed; those events come back after AckWait",
				"unconfirmed", h.sent.Load()-h.confirmed.Load())
			_ = h.sub.Unsubscribe()
			return
		}
	}
	_ = h.sub.Unsubscribe()
}

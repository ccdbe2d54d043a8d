package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"weak"

	"github.com/imcallback/callback"
	"github.com/nats-io/nats.go/jetstream"
)

// delivery is an event handed out to a worker. Until it is settled, it
// tells the server every third of AckWait that the worker is still on it,
// so a slow attempt is not handed to another node meanwhile.
type delivery struct {
	q   *Queue
	msg jetstream.Msg
	ev  callback.Event
	seq uint64   // in the work stream
	key *keyHold // the event's order key; nil for none

	mu      sync.Mutex // guards settled and keepalive's Reset
	settled bool
	alive   *time.Timer
}

func (q *Queue) deliver(msg jetstream.Msg, ev callback.Event, seq uint64) *delivery {
	ev.Attempts = max(0, ev.Attempts-postponed.count(q, seq))
	d := &delivery{q: q, msg: msg, ev: ev, seq: seq}
	d.mu.Lock()
	d.alive = time.AfterFunc(q.o.AckWait/3, d.keepalive)
	d.mu.Unlock()
	return d
}

// keepalive sends an in-progress ack, which restarts the server's AckWait,
// and schedules the next one, unless the delivery is settled.
func (d *delivery) keepalive() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return
	}
	_ = d.msg.InProgress() // a lost one costs at worst a redelivery
	d.alive.Reset(d.q.o.AckWait / 3)
}

// settle stops the keep-alives; none is sent once it returns.
func (d *delivery) settle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.settled = true
	d.alive.Stop()
}

// Event returns the event; Attempts counts the earlier hand-outs.
func (d *delivery) Event() callback.Event { return d.ev }

// Ack removes the event from the stream. It does not wait for the server:
// an ack lost in a crash means one more delivery, which the App backend
// deduplicates by webhook-id.
//
// An event with an order key is acked the same way: the check of the
// key's next event starts after this one, removed or not (order.go).
func (d *delivery) Ack(context.Context) error {
	d.settle()
	postponed.forget(d.q, d.seq)
	err := d.msg.Ack()
	if d.key != nil {
		d.q.settledKey(d.key, d.seq, true, 0)
	}
	return err
}

// Retry hands the event back to the server, which hands it out again
// after delay (NakWithDelay).
func (d *delivery) Retry(_ context.Context, delay time.Duration) error {
	d.settle()
	if d.key != nil {
		defer d.q.settledKey(d.key, d.seq, false, delay) // the key's next events wait for it still
	}
	if delay <= 0 {
		return d.q.handBack(d.msg) // stored, unlike a plain Nak (see handBackDelay), and confirmed before Close ends
	}
	return d.msg.NakWithDelay(delay)
}

// Postpone hands the event back like Retry, for an endpoint that could
// not take it: the hand-out is not counted in the Attempts of the event's
// next hand-outs on this node (see postponements).
func (d *delivery) Postpone(ctx context.Context, delay time.Duration) error {
	postponed.add(d.q, d.seq)
	return d.Retry(ctx, delay)
}

// DeadLetter stores the event in the dead-letter stream, waiting for
// JetStream's acknowledgement (bounded by ctx), and then removes it from
// the work stream. If the event cannot be stored it stays in the work
// stream and the error is returned.
func (d *delivery) DeadLetter(ctx context.Context, reason error) error {
	d.settle()
	m := eventMsg(d.q.o.DeadLetterSubject, d.ev)
	m.Subject = d.q.deadSubject(d.ev)
	m.Header[hdrAttempts] = []string{strconv.Itoa(d.ev.Attempts + 1)}
	m.Header[hdrError] = []string{reason.Error()}
	seq := strconv.FormatUint(d.seq, 10)
	m.Header[hdrSeq] = []string{seq}
	// Keyed by the work stream's sequence: the same hand-out dead-lettered
	// twice is stored once, and an event replayed and dead-lettered again
	// has a new sequence.
	_, err := d.q.js.PublishMsg(ctx, m,
		jetstream.WithMsgID(msgID(d.ev, ".dead."+seq)),
		jetstream.WithExpectStream(d.q.o.DeadLetterStream))
	if err != nil {
		return fmt.Errorf("%w: dead letter: %w", ErrPublish, err)
	}
	postponed.forget(d.q, d.seq)
	err = d.msg.TermWithReason("dead letter")
	if d.key != nil {
		d.q.settledKey(d.key, d.seq, true, 0) // the rest of its key go on
	}
	return err
}

// Replay moves every dead letter back into the work stream, with its
// webhook-id and a fresh schedule of attempts, and returns how many it
// moved. ctx bounds it; dead letters not reached stay where they are, and
// running Replay again continues. Events dead-lettered while it runs may
// or may not be replayed.
//
// To replay only some events, list them with ListDeadLetters and replay
// each with ReplayOne.
func (q *Queue) Replay(ctx context.Context) (int, error) {
	info, err := q.dead.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("natsqueue: replay: %w", err)
	}
	n := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := q.dead.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted: replayed before, or dropped by age
		}
		if err != nil {
			return n, fmt.Errorf("natsqueue: replay: %w", err)
		}
		if err := q.replay(ctx, raw); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// DeadLetters returns how many dead letters are stored.
func (q *Queue) DeadLetters(ctx context.Context) (uint64, error) {
	info, err := q.dead.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("natsqueue: %w", err)
	}
	return info.State.Msgs, nil
}

// Pending returns how many events the work stream holds: queued, being
// delivered or waiting for a retry.
func (q *Queue) Pending(ctx context.Context) (uint64, error) {
	info, err := q.work.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("natsqueue: %w", err)
	}
	return info.State.Msgs, nil
}

// maxPostponed bounds how many events a process keeps postponement counts
// for; beyond it a postponement counts as an attempt.
const maxPostponed = 1 << 17

// postponements counts, per event of a Queue, the hand-outs that the
// Dispatcher postponed (Delivery.Postpone: its endpoint could not take the
// event then), so that they are taken out of Event.Attempts, which
// JetStream counts as hand-outs (NumDelivered): a dead App backend's
// events then do not burn their RetrySchedule while its breaker is open.
//
// The counts live in this process: a postponed event handed out next by
// another node, or after a restart, counts its earlier postponements as
// attempts. An event's count is dropped when it is acked or dead-lettered
// here; the count of one settled elsewhere stays until the process ends
// (a few bytes each, at most maxPostponed).
type postponements struct {
	mu sync.Mutex
	m  map[postponeKey]int
}

type postponeKey struct {
	q   weak.Pointer[Queue] // does not keep a closed Queue alive
	seq uint64              // in the work stream
}

var postponed = postponements{m: make(map[postponeKey]int)}

func (p *postponements) add(q *Queue, seq uint64) {
	k := postponeKey{weak.Make(q), seq}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[k]; ok || len(p.m) < maxPostponed {
		p.m[k]++
	}
}

func (p *postponements) count(q *Queue, seq uint64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[postponeKey{weak.Make(q), seq}]
}

func (p *postponements) forget(q *Queue, seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, postponeKey{weak.Make(q), seq})
}

var _ callback.Postponer = (*delivery)(nil)

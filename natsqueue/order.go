package natsqueue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/imcallback/callback"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Order keys (callback.WithOrderKey) across nodes. An event under a key
// is stored on a subject of its own key, Subject.app.k.<token>, and
// JetStream keeps the order of a subject. A work-queue stream removes an
// event once it is acked or terminated (delivered or dead-lettered), so
// the event a key may send next is always the first message stored on
// its subject: a node that is handed a keyed event asks the stream for
// the first message of the subject (a message get, next_by_subj) and
// delivers the event only if it is that one. Whatever the order of the
// hand-outs, retries, crashes and fail-overs, the stream itself says
// which event is next, and nothing else has to agree.
//
// An event that is not next is held on the node that got it, not handed
// back: it keeps its place in the consumer's acks with in-progress acks,
// costs no attempt, and is checked again when the event ahead of it is
// settled: at once when that one was out on this node, and otherwise when
// the node that settled it says so on the wake subject (core NATS,
// _natsqueue.<Stream>.next, the key's subject as payload), or, should
// that word be lost, by a poll that backs off from pollMin to pollMax.
// A node holds at most Options.MaxWaiting events so; beyond that it hands
// them back with a growing delay, and such a hand-back counts as a
// postponement (see postponements).

// hdrOrderKey carries the event's order key.
const hdrOrderKey = "Callback-Order-Key"

// The polls of a held key whose wake did not come, and the delay of an
// event handed back because the node holds too many.
const (
	pollMin         = 25 * time.Millisecond
	pollMax         = 5 * time.Second
	overflowMin     = 100 * time.Millisecond
	overflowMax     = 30 * time.Second
	defaultWaiting  = 4096
	checkTimeout    = 5 * time.Second
	wakeSubjectRoot = "_natsqueue."
)

// keyToken returns the subject token of an order key: a hash, as a key
// may hold '.', '*', '>' and spaces. 128 bits: two keys of an app that
// share a token would share an order, which takes about 2^64 keys.
func keyToken(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

// eventSubject returns the subject of ev under prefix: prefix.app, and
// for an event with an order key prefix.app.k.token.
func eventSubject(prefix string, ev callback.Event) string {
	s := prefix + "." + strconv.Itoa(ev.AppID)
	if ev.OrderKey != "" {
		s += ".k." + keyToken(ev.OrderKey)
	}
	return s
}

// keyed is a node's state of the order keys it has events of: held
// behind their key, or out to a worker.
type keyed struct {
	mu      sync.Mutex
	keys    map[string]*keyHold // by subject
	due     []*keyHold          // to be checked by a worker
	held    int                 // events held in keys
	max     int                 // Options.MaxWaiting
	kick    chan struct{}       // a key is due
	wake    *nats.Subscription  // other nodes' word that a key's event was settled
	alive   *time.Timer         // in-progress acks of the held events
	stopped bool
}

// keyHold is one key's events on this node.
type keyHold struct {
	subject  string
	out      bool      // one of its events is out to a worker here
	checking bool      // a worker is asking the stream
	isDue    bool      // in due
	held     []heldMsg // waiting, by stream sequence
	poll     time.Duration
	timer    *time.Timer
	ahead    string // the webhook-id of the event the first held one waits for, when known
}

type heldMsg struct {
	msg jetstream.Msg
	ev  callback.Event
	seq uint64
}

func (q *Queue) wakeSubject() string { return wakeSubjectRoot + q.o.Stream + ".next" }

// startKeyed subscribes to the wake subject and starts the in-progress
// acks of held events.
func (q *Queue) startKeyed() error {
	k := &q.keyed
	k.keys = make(map[string]*keyHold)
	k.kick = make(chan struct{}, 1)
	k.max = q.o.MaxWaiting
	sub, err := q.nc.Subscribe(q.wakeSubject(), func(m *nats.Msg) { q.woken(string(m.Data)) })
	if err != nil {
		return err
	}
	k.wake = sub
	k.mu.Lock()
	k.alive = time.AfterFunc(q.o.AckWait/3, q.keepHeld)
	k.mu.Unlock()
	return nil
}

// keepHeld sends an in-progress ack for every held event, so that the
// server does not hand them to another node, and schedules the next round.
func (q *Queue) keepHeld() {
	k := &q.keyed
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	for _, kh := range k.keys {
		for _, h := range kh.held {
			_ = h.msg.InProgress() // a lost one costs at worst a redelivery
		}
	}
	k.alive.Reset(q.o.AckWait / 3)
}

// woken marks the key of subject due, if this node holds events of it.
func (q *Queue) woken(subject string) {
	k := &q.keyed
	k.mu.Lock()
	defer k.mu.Unlock()
	if kh := k.keys[subject]; kh != nil {
		kh.poll = 0
		k.markDue(kh)
	}
}

// markDue queues kh for a check by a worker, with mu held.
func (k *keyed) markDue(kh *keyHold) {
	if kh.isDue || kh.out || kh.checking || len(kh.held) == 0 || k.stopped {
		return
	}
	kh.isDue = true
	k.due = append(k.due, kh)
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// nextDue takes the next key to check, if any.
func (k *keyed) nextDue() *keyHold {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.due) == 0 {
		return nil
	}
	kh := k.due[0]
	k.due[0] = nil
	k.due = k.due[1:]
	kh.isDue = false
	if len(k.due) > 0 {
		select {
		case k.kick <- struct{}{}:
		default:
		}
	}
	return kh
}

// takeKeyed takes in a keyed event handed out by the server. It returns
// the delivery when the event may go now; otherwise it is held, or handed
// back when the node holds too many.
func (q *Queue) takeKeyed(ctx context.Context, msg jetstream.Msg, ev callback.Event, seq uint64, delivered uint64) *delivery {
	k := &q.keyed
	subject := msg.Subject()
	k.mu.Lock()
	kh := k.keys[subject]
	if kh == nil {
		kh = &keyHold{subject: subject}
		k.keys[subject] = kh
	}
	i, found := slices.BinarySearchFunc(kh.held, seq, func(h heldMsg, s uint64) int {
		switch {
		case h.seq < s:
			return -1
		case h.seq > s:
			return 1
		}
		return 0
	})
	switch {
	case found: // handed out again (a lost in-progress ack): the new hand-out is the one to settle
		kh.held[i] = heldMsg{msg, ev, seq}
	case k.held >= k.max && (i > 0 || kh.out):
		k.forget(kh)
		k.mu.Unlock()
		postponed.add(q, seq)
		_ = msg.NakWithDelay(min(overflowMax, overflowMin<<min(delivered, 10)))
		return nil
	default:
		kh.held = slices.Insert(kh.held, i, heldMsg{msg, ev, seq})
		k.held++
	}
	k.mu.Unlock()
	return q.checkKey(ctx, kh)
}

// forget drops kh once it has nothing here, with mu held.
func (k *keyed) forget(kh *keyHold) {
	if kh.out || kh.checking || len(kh.held) > 0 {
		return
	}
	if kh.timer != nil {
		kh.timer.Stop()
	}
	delete(k.keys, kh.subject)
}

// checkKey asks the stream whether the first event held of kh is the
// first of its key, and returns its delivery if it is. Otherwise it
// schedules the next check: a poll, unless the event ahead is out here.
func (q *Queue) checkKey(ctx context.Context, kh *keyHold) *delivery {
	k := &q.keyed
	for {
		k.mu.Lock()
		if kh.out || kh.checking || len(kh.held) == 0 || k.stopped {
			k.forget(kh)
			k.mu.Unlock()
			return nil
		}
		kh.checking = true
		first := kh.held[0]
		k.mu.Unlock()

		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		raw, err := q.work.GetMsg(cctx, 0, jetstream.WithGetMsgSubject(kh.subject))
		cancel()

		k.mu.Lock()
		kh.checking = false
		if len(kh.held) == 0 || kh.held[0].seq != first.seq || k.stopped {
			// Taken meanwhile (stop), or one before it came: look again.
			k.mu.Unlock()
			continue
		}
		switch {
		case err == nil && raw.Sequence == first.seq:
			kh.held = slices.Delete(kh.held, 0, 1)
			k.held--
			kh.out, kh.poll, kh.ahead = true, 0, ""
			if kh.timer != nil {
				kh.timer.Stop()
			}
			k.mu.Unlock()
			d := q.deliver(first.msg, first.ev, first.seq)
			d.key = kh
			return d
		case err == nil && raw.Sequence > first.seq, errors.Is(err, jetstream.ErrMsgNotFound):
			// The first held is no longer stored: settled by another node
			// that was handed it after a lost in-progress ack.
			kh.held = slices.Delete(kh.held, 0, 1)
			k.held--
			k.mu.Unlock()
			continue
		case err == nil:
			kh.ahead = raw.Header.Get(hdrID)
		default:
			if ctx.Err() == nil {
				q.o.Logger.Warn("natsqueue: order key check failed; polling", slog.String("error", err.Error()))
			}
		}
		k.schedule(kh, 0)
		k.mu.Unlock()
		return nil
	}
}

// schedule sets kh's next poll, at least after, with mu held.
func (k *keyed) schedule(kh *keyHold, after time.Duration) {
	kh.poll = min(pollMax, max(pollMin, 2*kh.poll))
	wait := max(kh.poll, after)
	if kh.timer == nil {
		kh.timer = time.AfterFunc(wait, func() {
			k.mu.Lock()
			defer k.mu.Unlock()
			k.markDue(kh)
		})
		return
	}
	kh.timer.Reset(wait)
}

// settledKey is called when the event of kh out here was settled: sent
// (acked), dead-lettered, or handed back for a retry after delay. The
// key's held events are checked at once, or after the retry's delay.
func (q *Queue) settledKey(kh *keyHold, done bool, delay time.Duration) {
	if done {
		_ = q.nc.Publish(q.wakeSubject(), []byte(kh.subject)) // a lost one costs a poll
	}
	k := &q.keyed
	k.mu.Lock()
	defer k.mu.Unlock()
	kh.out = false
	switch {
	case len(kh.held) == 0:
		k.forget(kh)
	case done:
		kh.poll = 0
		k.markDue(kh)
	default:
		kh.poll = 0
		k.schedule(kh, delay)
	}
}

// stopKeyed hands every held event back to the server, in their order
// of the stream, and stops the timers.
func (q *Queue) stopKeyed() {
	k := &q.keyed
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped || k.keys == nil {
		return
	}
	k.stopped = true
	k.alive.Stop()
	for _, kh := range k.keys {
		if kh.timer != nil {
			kh.timer.Stop()
		}
		for _, h := range kh.held {
			_ = q.handBack(h.msg) // a lost one costs a redelivery after AckWait
		}
		k.held -= len(kh.held)
		kh.held = nil
	}
	k.due = nil
	_ = k.wake.Unsubscribe()
}

// WaitingForKey returns how many events this node holds behind an
// earlier event of their order key (callback.WithOrderKey), not yet
// handed to a worker.
func (q *Queue) WaitingForKey() int {
	q.keyed.mu.Lock()
	defer q.keyed.mu.Unlock()
	return q.keyed.held
}

package natsqueue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imcallback/callback"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Order keys (callback.WithOrderKey) across nodes. An event under a key
// is stored on a subject of its own key, Subject.app.k.<token>, and
// JetStream keeps the order of a subject. A work-queue stream removes an
// event only once it is acked (after a 2xx) or terminated (after its
// dead letter is stored), so the stream itself says which event of a key
// may go: a node handed a keyed event asks the stream for the first
// message stored on the key's subject after the last event of the key it
// knows answered (a message get with next_by_subj from done+1, see
// keyHold.done), and delivers the event only if it is that one. An event
// that JetStream stored with a mark naming its predecessor needs no
// asking once that predecessor is known answered (keyAfter).
//
// Why that keeps the order (an event is sent only once every earlier
// event of its key was answered 2xx or dead-lettered), by induction over
// the events sent: the earlier events of a key are those up to done,
// answered by what done means, and those between done and the event,
// which the stream no longer stores and so were acked or terminated,
// that is answered. done only grows to the sequence of an event answered
// here, or named by another node's wake, which it sends only for an
// event answered there; and an event was sent only once every earlier
// one was answered, so every event up to it is. A retry (Nak) is no
// answer and leaves done as it is. The stream decides, not the nodes:
// whatever the order of hand-outs, retries, crashes and fail-overs,
// nothing else has to agree.
//
// So an event is acked with a plain ack, not a confirmed one, and the
// key's next is checked at once: the check starts after the acked event,
// whether the server has removed it yet or not. An ack lost in a crash
// brings the event back after AckWait, perhaps after later events of its
// key: a repeat of an answered event (at least once; the App deduplicates
// by webhook-id). A node handed an event that it answered itself (its
// doneHere covers it) acks it again without sending it. One that only
// another node's wake says is answered is sent again, a repeat as after a
// crash: the node cannot tell a wake's word from a forged one, and a
// forged wake must not make it drop events (see woken).
//
// The checks are direct gets (the stream allows them, see allowDirect):
// answered without the JetStream API's queue, in replicated streams by
// any replica. A replica stores a prefix of the stream's log less the
// events whose acks it applied, so its "the first after done is this
// one" is the leader's too. A replica behind the leader may not have the
// event yet: "none stored" is checked with the leader (stream info of the
// subject) before the held event is taken as settled elsewhere; a replica
// behind on removals names an event ahead, which costs a poll.
//
// An event that is not next is held on the node that got it, not handed
// back: it keeps its place in the consumer's acks with in-progress acks,
// costs no attempt, and is checked again when the event ahead of it is
// settled: at once when that one was out on this node, and otherwise when
// the node that settled it says so on the wake subject (core NATS,
// _natsqueue.<Stream>.next: lines of a key's subject and the sequence
// answered, gathered for up to wakeDelay into one message), or, should
// that word be lost, by a poll that backs off from pollMin to pollMax. A
// node sends a wake only when the key's next event is not one it holds
// (none held, or the check after the settle names another), since the
// holders of any later event wait for that next one.
// A node holds at most Options.MaxWaiting events so; beyond that it hands
// them back with a growing delay, and such a hand-back counts as a
// postponement (see postponements).

// hdrOrderKey carries the event's order key; hdrKeyAfter marks an event
// with the sequence of the last message stored on its key's subject when
// it was stored, 0 for none (see keyAfter).
const (
	hdrOrderKey = "Callback-Order-Key"
	hdrKeyAfter = "Callback-Key-After"
)

// The polls of a held key whose wake did not come, and the delay of an
// event handed back because the node holds too many.
const (
	pollMin         = 25 * time.Millisecond
	pollMax         = 5 * time.Second
	overflowMin     = 100 * time.Millisecond
	overflowMax     = 30 * time.Second
	defaultWaiting  = 4096
	checkTimeout    = time.Second
	wakeSubjectRoot = "_natsqueue."
	wakeDelay       = time.Millisecond
	wakeBatch       = 16 << 10 // bytes of wakes published at once
	maxRecent       = 1024     // keys.recent
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
	wakes   wakes // to other nodes, gathered
	// recent keeps the done of keys forgotten lately (by subject), so
	// that the key's next event, handed out just after, is not checked
	// from the start and found behind its predecessor whose ack the
	// server has not processed yet. Made anew once it holds maxRecent.
	recent map[string]keyDone

	lastMu sync.Mutex
	last   map[string]uint64        // by subject: the highest sequence published on it here (keyAfter)
	turns  map[string]chan struct{} // by subject: held by the publish of the key's event under way here
	users  map[string]int           // by subject: the publishes holding or awaiting its turn
}

// keyDone is what a forgotten key's keyHold knew answered: its done and
// doneHere.
type keyDone struct{ done, here uint64 }

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
	// done is the highest stream sequence of the key known answered (2xx
	// or dead-lettered): settled here, or by word of another node's wake.
	// Every event of the key up to it was answered (see the package
	// comment); checks ask for the first event after it.
	done uint64
	// doneHere is the highest stream sequence of the key answered on this
	// node: an event it covers is acked without being sent (an answered
	// event handed out again after a lost ack). done may be above it by
	// word of another node, which is trusted for the order but not to
	// drop an event (see checkKey).
	doneHere uint64
	// wake: an event of the key was settled here and the other nodes
	// have not been told; told by the next check unless it finds an event
	// held here to be the key's next (see settledKey).
	wake bool
}

type heldMsg struct {
	msg jetstream.Msg
	ev  callback.Event
	seq uint64
	// after: the sequence of the last message stored on the key's
	// subject when this one was, from its mark (keyAfter); valid if
	// marked.
	after  uint64
	marked bool
}

func (q *Queue) wakeSubject() string { return wakeSubjectRoot + q.o.Stream + ".next" }

// startKeyed subscribes to the wake subject and starts the in-progress
// acks of held events.
func (q *Queue) startKeyed() error {
	k := &q.keyed
	k.keys = make(map[string]*keyHold)
	k.kick = make(chan struct{}, 1)
	k.max = q.o.MaxWaiting
	sub, err := q.nc.Subscribe(q.wakeSubject(), func(m *nats.Msg) { q.woken(m.Data) })
	if err != nil {
		return err
	}
	k.wake = sub
	k.wakes.timer = time.AfterFunc(time.Hour, q.flushWakes)
	k.wakes.timer.Stop()
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

// woken takes other nodes' word that events of keys were settled (the
// payload: lines of a key's subject and the stream sequence up to which
// its events are answered, see publishWake) and marks each key due that
// this node holds events of. Anyone allowed to publish on the wake
// subject is believed for the order: a forged wake can send a key's event
// before an earlier one, or send an answered one again, but makes no
// node drop an event, since only doneHere lets one be acked unsent.
func (q *Queue) woken(data []byte) {
	k := &q.keyed
	k.mu.Lock()
	defer k.mu.Unlock()
	for line := range strings.Lines(string(data)) {
		subject, seqText, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if kh := k.keys[subject]; kh != nil && err == nil {
			kh.done = max(kh.done, seq)
			kh.poll = 0
			k.markDue(kh)
		}
	}
}

// wakes gathers the wakes a node sends within wakeDelay into one
// message, so that a node that settles many keys' events a second sends
// few messages, at the cost of up to wakeDelay for a key whose next event
// another node holds.
type wakes struct {
	mu      sync.Mutex
	buf     []byte
	timer   *time.Timer // publishes buf; armed while buf holds any
	stopped bool
}

// publishWake tells the other nodes, within wakeDelay, that the events of
// the key of subject up to stream sequence seq are answered. A lost one
// costs them a poll.
func (q *Queue) publishWake(subject string, seq uint64) {
	w := &q.keyed.wakes
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped { // an attempt that ended after stop
		_ = q.nc.Publish(q.wakeSubject(), []byte(subject+" "+strconv.FormatUint(seq, 10)+"\n"))
		return
	}
	armed := len(w.buf) > 0
	w.buf = append(w.buf, subject...)
	w.buf = append(w.buf, ' ')
	w.buf = strconv.AppendUint(w.buf, seq, 10)
	w.buf = append(w.buf, '\n')
	switch {
	case len(w.buf) >= wakeBatch:
		q.flushWakesLocked()
	case !armed:
		w.timer.Reset(wakeDelay)
	}
}

// flushWakes publishes the wakes gathered.
func (q *Queue) flushWakes() {
	q.keyed.wakes.mu.Lock()
	defer q.keyed.wakes.mu.Unlock()
	q.flushWakesLocked()
}

func (q *Queue) flushWakesLocked() {
	w := &q.keyed.wakes
	if len(w.buf) == 0 {
		return
	}
	w.timer.Stop()
	_ = q.nc.Publish(q.wakeSubject(), w.buf) // copies buf; a lost one costs a poll
	w.buf = w.buf[:0]
}

// takeWake returns whether kh owes the other nodes a wake, and clears
// it, with mu held.
func (kh *keyHold) takeWake() bool {
	w := kh.wake
	kh.wake = false
	return w
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
func (q *Queue) takeKeyed(ctx context.Context, msg jetstream.Msg, ev callback.Event, seq uint64, delivered uint64, after uint64, marked bool) *delivery {
	k := &q.keyed
	subject := msg.Subject()
	k.mu.Lock()
	kh := k.keys[subject]
	if kh == nil {
		r := k.recent[subject]
		kh = &keyHold{subject: subject, done: r.done, doneHere: r.here}
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
		kh.held[i] = heldMsg{msg, ev, seq, after, marked}
	case k.held >= k.max && (i > 0 || kh.out):
		k.forget(kh)
		k.mu.Unlock()
		postponed.add(q, seq)
		_ = msg.NakWithDelay(min(overflowMax, overflowMin<<min(delivered, 10)))
		return nil
	default:
		kh.held = slices.Insert(kh.held, i, heldMsg{msg, ev, seq, after, marked})
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
	if k.keys[kh.subject] != kh {
		return
	}
	delete(k.keys, kh.subject)
	if kh.done > 0 {
		if len(k.recent) >= maxRecent {
			k.recent = nil
		}
		if k.recent == nil {
			k.recent = make(map[string]keyDone)
		}
		k.recent[kh.subject] = keyDone{kh.done, kh.doneHere}
	}
}

// checkKey asks the stream whether the first event held of kh is the
// first stored of its key after the last one known answered (kh.done),
// and returns its delivery if it is. Otherwise it schedules the next
// check (a poll, unless the event ahead is out here) and tells the other
// nodes of a settle here they were not told of (kh.wake): the key's next
// event is not this node's, and the node that holds it may wait for it.
func (q *Queue) checkKey(ctx context.Context, kh *keyHold) *delivery {
	k := &q.keyed
	for {
		k.mu.Lock()
		if kh.out || kh.checking || len(kh.held) == 0 || k.stopped {
			wake := kh.takeWake()
			k.forget(kh)
			done := kh.done
			k.mu.Unlock()
			if wake {
				q.publishWake(kh.subject, done)
			}
			return nil
		}
		first := kh.held[0]
		if first.seq <= kh.done && first.seq > kh.doneHere {
			// Answered, by another node's word only (a wake): sent again
			// rather than acked unsent, since a forged or mistaken wake
			// must not drop an event. At worst a repeat, as after an ack
			// lost in a crash.
			return q.handOut(kh)
		}
		if first.seq <= kh.done {
			// Answered here already (handed out again after a lost ack or
			// in-progress ack): acked again, which removes it if it is
			// still stored.
			kh.held = slices.Delete(kh.held, 0, 1)
			k.held--
			k.mu.Unlock()
			_ = first.msg.Ack() // a lost one costs a redelivery, settled the same way
			continue
		}
		if first.marked && first.after <= kh.done {
			// Stored when the last message of its key stored was one
			// known answered, or none: nothing before it is pending, so
			// nothing to ask (keyAfter).
			return q.handOut(kh)
		}
		kh.checking = true
		start := kh.done + 1
		k.mu.Unlock()

		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		raw, err := q.work.GetMsg(cctx, start, jetstream.WithGetMsgSubject(kh.subject))
		gone := errors.Is(err, jetstream.ErrMsgNotFound) && q.subjectEmpty(cctx, kh.subject)
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
			return q.handOut(kh)
		case err == nil && raw.Sequence > first.seq, gone:
			// The first held is no longer stored: settled by another node
			// that was handed it after a lost in-progress ack.
			kh.held = slices.Delete(kh.held, 0, 1)
			k.held--
			k.mu.Unlock()
			continue
		case err == nil:
			kh.ahead = raw.Header.Get(hdrID)
		case errors.Is(err, jetstream.ErrMsgNotFound):
			// Not stored on the server that answered, which may be a
			// replica behind the leader (direct gets), while the leader
			// has it: look again.
		default:
			if ctx.Err() == nil {
				q.o.Logger.Warn("natsqueue: order key check failed; polling", slog.String("error", err.Error()))
			}
		}
		wake := kh.takeWake()
		done := kh.done
		k.schedule(kh, 0)
		k.mu.Unlock()
		if wake {
			q.publishWake(kh.subject, done)
		}
		return nil
	}
}

// handOut hands the first held event of kh, the key's next, to a
// worker; called with mu held, which it unlocks.
func (q *Queue) handOut(kh *keyHold) *delivery {
	k := &q.keyed
	first := kh.held[0]
	kh.held = slices.Delete(kh.held, 0, 1)
	k.held--
	// No wake owed: any other node's event of the key comes after this
	// one, and this one's settle tells them.
	kh.out, kh.poll, kh.ahead, kh.wake = true, 0, "", false
	if kh.timer != nil {
		kh.timer.Stop()
	}
	k.mu.Unlock()
	d := q.deliver(first.msg, first.ev, first.seq)
	d.key = kh
	return d
}

// keyAfter: After's node publishes a keyed event expecting the last
// message stored on its key's subject to be P
// (Nats-Expected-Last-Subject-Sequence), and marks it hdrKeyAfter: P.
// P is its guess: the highest sequence it published on the subject
// (lastPublished), or 0. JetStream compares P with the last message
// still stored on the subject, a removed (acked or terminated) one not
// counting, in the same step as it stores the event (a single server
// under the stream's lock; a replicated stream's leader before it
// proposes the event, refusing an expectation while any other message
// of the subject is proposed and not applied: what KV's compare-and-set
// rests on too). So a marked event of
// sequence S was stored when every message of its subject between P and
// S had been removed, that is answered, and P, if not 0, was stored. The
// events before it are then those up to P, and those after P, all
// answered; once P <= done (every event of the key up to done is
// answered), nothing before the event is pending, and the node handed
// it delivers it without asking, on every hand-out: the mark is a fact
// of the stored message, whoever is handed it, after any number of
// retries, crashes or fail-overs. P = 0 is an event stored as its key's
// only one. A node whose done is below P (it did not see P answered)
// asks the stream as for an unmarked event.
//
// A node publishes one event of a key at a time (takeTurn): Afters of
// one key from several goroutines at once wait for each other's publish
// (a round trip each), where each would otherwise guess before the
// other's sequence is known and be refused. With 64 keys and 64 senders
// in the bench that was 4 refusals in 10 events; with turns, none.
// Afters on another node still race with them and are refused.
//
// A refused expectation names the last stored sequence X (JetStream's
// "wrong last sequence: X"): the event is published once more expecting
// X and marked X; if that is refused too, or the refusal names none (a
// replicated stream's answer while another message of the subject is in
// flight), it is published without the expectation and the mark, and
// checked as any other when handed out. A publish sent again after no
// answer keeps its mark and expectation; if the first was stored, the
// repeat is refused (it names the stored event, or a later one) or
// taken as a duplicate by its Nats-Msg-Id, and the stored message's mark
// is the one that counts. A dead letter is stored from the event, with
// no mark, and so replayed: unmarked, checked.

// maxLast bounds the keys a node remembers its last publish of (the map
// is made anew when full, and the keys' next publishes guess 0).
const maxLast = 4096

// takeTurn waits until no other publish of an event of the key of
// subject is under way on this node, so that each is marked with the one
// before (keyAfter), and takes the turn; endTurn gives it up.
func (k *keyed) takeTurn(ctx context.Context, subject string) (chan struct{}, error) {
	k.lastMu.Lock()
	turn := k.turns[subject]
	if turn == nil {
		if k.turns == nil {
			k.turns, k.users = make(map[string]chan struct{}), make(map[string]int)
		}
		turn = make(chan struct{}, 1)
		k.turns[subject] = turn
	}
	k.users[subject]++
	k.lastMu.Unlock()
	select {
	case turn <- struct{}{}:
		return turn, nil
	case <-ctx.Done():
		k.leave(subject)
		return nil, ctx.Err()
	}
}

func (k *keyed) endTurn(subject string, turn chan struct{}) {
	<-turn
	k.leave(subject)
}

func (k *keyed) leave(subject string) {
	k.lastMu.Lock()
	defer k.lastMu.Unlock()
	if k.users[subject]--; k.users[subject] == 0 {
		delete(k.users, subject)
		delete(k.turns, subject)
	}
}

// lastPublished returns the highest stream sequence published on subject
// by this node, or 0: the guess of the last message stored on it.
func (k *keyed) lastPublished(subject string) uint64 {
	k.lastMu.Lock()
	defer k.lastMu.Unlock()
	return k.last[subject]
}

// published notes that an event was stored on subject at seq (a
// duplicate's answer names the first store's). Concurrent Afters on one
// key note theirs in any order: the map keeps the highest.
func (k *keyed) published(subject string, seq uint64) {
	k.lastMu.Lock()
	defer k.lastMu.Unlock()
	if seq <= k.last[subject] {
		return
	}
	if len(k.last) >= maxLast {
		k.last = nil
	}
	if k.last == nil {
		k.last = make(map[string]uint64)
	}
	k.last[subject] = seq
}

// subjectEmpty reports whether the stream leader holds no message on
// subject: an event handed out on it and not found there was removed
// (acked or terminated). Its own errors count as not empty: the check is
// made again.
func (q *Queue) subjectEmpty(ctx context.Context, subject string) bool {
	info, err := q.work.Info(ctx, jetstream.WithSubjectFilter(subject))
	return err == nil && info.State.Subjects[subject] == 0
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

// settledKey is called when the event of kh out here, of stream
// sequence seq, was settled: answered (done: acked after a 2xx, or
// dead-lettered), or handed back for a retry after delay. The key's held
// events are checked at once, or after the retry's delay. With none held
// here the other nodes are told at once of an answered event; otherwise
// the check tells them if the key's next event is not one held here.
func (q *Queue) settledKey(kh *keyHold, seq uint64, done bool, delay time.Duration) {
	k := &q.keyed
	k.mu.Lock()
	kh.out = false
	if done {
		kh.done = max(kh.done, seq)
		kh.doneHere = max(kh.doneHere, seq)
	}
	wake := false
	switch {
	case len(kh.held) == 0:
		wake = done
		k.forget(kh)
	case done:
		kh.wake = true
		kh.poll = 0
		k.markDue(kh)
	default:
		kh.poll = 0
		k.schedule(kh, delay)
	}
	k.mu.Unlock()
	if wake {
		q.publishWake(kh.subject, seq)
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
		if kh.takeWake() {
			q.publishWake(kh.subject, kh.done)
		}
		k.held -= len(kh.held)
		kh.held = nil
	}
	k.due = nil
	_ = k.wake.Unsubscribe()
	k.wakes.mu.Lock()
	q.flushWakesLocked()
	k.wakes.stopped = true
	k.wakes.mu.Unlock()
}

// WaitingForKey returns how many events this node holds behind an
// earlier event of their order key (callback.WithOrderKey), not yet
// handed to a worker.
func (q *Queue) WaitingForKey() int {
	q.keyed.mu.Lock()
	defer q.keyed.mu.Unlock()
	return q.keyed.held
}

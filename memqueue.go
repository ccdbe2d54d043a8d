package callback

import (
	"container/heap"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// memQueue is the queue used when Config.Queue is nil: events in memory,
// in a lane per endpoint. Get serves the lanes round robin and hands out
// an event only when its endpoint can take an attempt now (urlState.take):
// a lane whose endpoint cannot (breaker open, rate limit, its share of
// the workers in use) is skipped or parked until a timer, and its events
// hold no worker. A retry waits on a timer in the queue too (Retry), not
// in a worker.
//
// Space is bounded twice: size events in all and share per endpoint, so
// one stuck App backend fills only its own share. Both count the events
// waiting for a worker and those waiting for a retry; a retry is always
// taken back, whatever the counts, so no event is lost.
//
// After Stop, Get goes on handing out every event, retries included, and
// returns ErrClosed once none is left and none is out. Once Get's ctx has
// ended (Close's deadline), it hands out every event at once, whatever
// its endpoint's state or its retry's time, so that the worker can
// dead-letter it.
//
// Put does not take the lock of the lanes, which the workers hold while
// they pick: it appends the event to an inbound fifo under a lock of its
// own, held only for the counts and the append, and Get moves the inbound
// events into their lanes before it picks (intake). The counts are
// checked and raised under that lock, so QueueSize and EndpointQueueSize
// are exact: Puts are serialised there, and the workers only lower the
// counts (but for retries, which are taken back whatever the counts).
//
// The queue starts no goroutine: the workers waiting in Get wait for the
// next timer themselves.
type memQueue struct {
	size, share int
	urls        *urlStates

	inMu     sync.Mutex
	in       fifo[inbound] // Put's events, not yet in their lanes
	inClosed bool          // Stop was called; Put refuses
	// keys holds a line per order key with an event pending (memorder.go),
	// under inMu: Put queues a keyed event behind its key's pending one.
	keys     map[uint64]*keyLine // by keyHash, colliding lines chained
	nkeys    int                 // lines in keys
	keysPeak int                 // the most keys held since keys was made
	spare    []*keyLine          // emptied lines, for reuse
	keyWait  int                 // events in the lines: waiting for their key

	mu     sync.Mutex
	lanes  map[*urlState]*lane
	ready  []*lane       // lanes with events and not parked, in turn order
	waits  waitHeap      // retries and parked lanes, soonest first
	taking fifo[inbound] // the inbound events being moved into lanes
	out    int           // handed out, not settled
	closed bool          // Stop was called
	done   chan struct{}

	// n counts the events held: inbound, in lanes and in waits. It is
	// raised under inMu (Put) or mu (a retry) and lowered under mu.
	n    atomic.Int64
	kick chan struct{} // wakes a waiting worker: something changed
}

// inbound is an event given to Put, with its endpoint.
type inbound struct {
	e  *urlState
	ev Event
}

// lane is the events of one endpoint.
type lane struct {
	e      *urlState
	evs    fifo[Event]
	held   int  // events in evs and in waits
	out    int  // handed out, not settled
	queued bool // in ready
	parked bool // in waits, until its endpoint may take an event
}

func (l *lane) len() int        { return l.evs.n }
func (l *lane) push(ev Event)   { l.evs.push(ev) }
func (l *lane) pop() (ev Event) { return l.evs.pop() }

func newMemQueue(size, share, workers int, urls *urlStates) *memQueue {
	return &memQueue{
		size: size, share: share, urls: urls,
		lanes: make(map[*urlState]*lane),
		keys:  make(map[uint64]*keyLine),
		done:  make(chan struct{}),
		kick:  make(chan struct{}, workers),
	}
}

// Put queues ev for its endpoint's lane. ev.route is set: After resolved it.
func (q *memQueue) Put(_ context.Context, ev Event) error {
	var kh uint64
	if ev.OrderKey != "" {
		kh = keyStringHash(ev.OrderKey)
	}
	_, err := q.put(q.urls.forRoute(ev.route), &ev, kh)
	return err
}

// full reports whether put would now refuse an event for e with
// ErrQueueFull. It reads the counts without the lock, so After can
// refuse without building the event; put checks them again under it.
func (q *memQueue) full(e *urlState) bool {
	return q.n.Load() >= int64(q.size) || e.held.Load() >= int32(q.share)
}

// put queues ev for its endpoint e's lane or, when an earlier event of
// its order key is pending, behind that one, which it returns. kh is the
// keyStringHash of ev.OrderKey, taken by WithOrderKey.
func (q *memQueue) put(e *urlState, ev *Event, kh uint64) (ahead eventRef, err error) {
	var h uint64
	if ev.OrderKey != "" {
		h = keyHashOf(ev.AppID, kh)
	}
	q.inMu.Lock()
	if q.inClosed {
		q.inMu.Unlock()
		return ahead, ErrClosed
	}
	if q.n.Load() >= int64(q.size) || e.held.Load() >= int32(q.share) {
		q.inMu.Unlock()
		return ahead, ErrQueueFull
	}
	q.n.Add(1)
	e.held.Add(1)
	now := true
	if ev.OrderKey != "" {
		now, ahead = q.queueKeyed(h, e, ev)
	}
	if now {
		q.in.push(inbound{e: e, ev: *ev})
	}
	q.inMu.Unlock()
	e.wanted(ev.Queued)
	if now {
		q.wake()
	}
	return ahead, nil
}

// intake moves the inbound events into their lanes, in the order Put
// took them; they are counted already. It runs with mu held and takes
// inMu only to swap the inbound fifo for the empty one it drained last.
func (q *memQueue) intake() {
	q.inMu.Lock()
	if q.in.n == 0 {
		q.inMu.Unlock()
		return
	}
	q.in, q.taking = q.taking, q.in
	q.inMu.Unlock()
	for q.taking.n > 0 {
		q.toLane(q.taking.pop())
	}
}

// oldest returns when the oldest event held was queued (After's time):
// inbound, in a lane, waiting for a retry or for its order key; zero when
// none is held. A lane and a key's line are in queue order, so only their
// first events are looked at, and each retry is: it takes both locks for
// O(endpoints + retries + keys), which suits Stats and a metrics scrape,
// not the hot path.
func (q *memQueue) oldest() time.Time {
	var t time.Time
	older := func(at time.Time) {
		if !at.IsZero() && (t.IsZero() || at.Before(t)) {
			t = at
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range q.lanes {
		if l.len() > 0 {
			older(l.evs.peek().Queued)
		}
	}
	for _, w := range q.waits {
		if w.ev != nil {
			older(w.ev.Queued)
		}
	}
	q.inMu.Lock() // after mu, as intake takes them
	if q.in.n > 0 {
		older(q.in.peek().ev.Queued)
	}
	for _, l := range q.keys {
		for ; l != nil; l = l.chain {
			if l.len() > 0 {
				older(l.evs.peek().ev.Queued)
			}
		}
	}
	q.inMu.Unlock()
	return t
}

// add counts one more event held for l: a retry, taken back whatever
// the counts.
func (q *memQueue) add(l *lane) {
	l.held++
	q.n.Add(1)
	l.e.held.Add(1)
}

// enqueue puts l in turn if it has events and is not parked.
func (q *memQueue) enqueue(l *lane) {
	if !l.queued && !l.parked && l.len() > 0 {
		l.queued = true
		q.ready = append(q.ready, l)
	}
}

// wake lets one waiting worker look again.
func (q *memQueue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Get hands out the next event whose endpoint can take it, waiting for
// one; see memQueue.
func (q *memQueue) Get(ctx context.Context) (Delivery, error) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		q.mu.Lock()
		now := time.Now()
		flush := ctx.Err() != nil
		q.intake()
		q.fire(now, flush)
		if dl := q.pick(now, flush); dl != nil {
			q.mu.Unlock()
			return dl, nil
		}
		if q.closed && q.n.Load() == 0 && q.out == 0 {
			q.finish()
			q.mu.Unlock()
			return nil, ErrClosed
		}
		var timer <-chan time.Time
		if len(q.waits) > 0 && !flush {
			d := q.waits[0].at.Sub(now)
			if t == nil {
				t = time.NewTimer(d)
			} else {
				t.Reset(d)
			}
			timer = t.C
		}
		q.mu.Unlock()
		var ended <-chan struct{}
		if !flush {
			ended = ctx.Done()
		}
		select {
		case <-q.kick:
		case <-timer:
		case <-ended:
		case <-q.done:
		}
	}
}

// pick takes the first event, in turn, whose endpoint can take it now.
// A lane that cannot is parked until its endpoint's time, or, when only
// its share of the workers is in use, left in turn until an attempt ends.
func (q *memQueue) pick(now time.Time, flush bool) *memDelivery {
	for range len(q.ready) {
		l := q.ready[0]
		q.ready = q.ready[1:]
		var p permit
		if !flush {
			var wake time.Time
			var ok bool
			if p, wake, ok = l.e.take(now); !ok {
				if wake.IsZero() {
					q.ready = append(q.ready, l)
				} else {
					l.queued, l.parked = false, true
					heap.Push(&q.waits, wait{at: wake, lane: l})
				}
				continue
			}
		}
		ev := l.pop()
		l.queued = false
		q.enqueue(l)
		l.held--
		q.n.Add(-1)
		l.e.held.Add(-1)
		l.out++
		q.out++
		return &memDelivery{q: q, l: l, ev: ev, p: p}
	}
	return nil
}

// finish wakes every waiting worker once nothing is left after Stop.
func (q *memQueue) finish() {
	select {
	case <-q.done:
	default:
		close(q.done)
	}
}

func (q *memQueue) Stop() {
	q.inMu.Lock()
	q.inClosed = true // no Put counts an event from now on
	q.inMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	if q.n.Load() == 0 && q.out == 0 {
		q.finish()
	}
}

func (q *memQueue) Close() error { return nil }

// len returns how many events the queue holds, waiting for a worker or a
// retry.
func (q *memQueue) len() int { return int(q.n.Load()) }

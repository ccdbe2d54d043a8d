package callback

import (
	"container/heap"
	"context"
	"time"
)

// memDelivery is an event handed out by a memQueue, with the permit its
// endpoint gave for the attempt (none when handed out to be dead-lettered
// at Close's deadline).
type memDelivery struct {
	q  *memQueue
	l  *lane
	ev Event
	p  permit
}

func (m *memDelivery) Event() Event { return m.ev }

func (m *memDelivery) Ack(context.Context) error {
	m.q.settled(m.l, &m.ev, false, time.Time{})
	return nil
}

func (m *memDelivery) DeadLetter(context.Context, error) error {
	m.q.settled(m.l, &m.ev, false, time.Time{})
	return nil
}

// Retry queues the event again in its lane once delay has passed, with
// this hand-out counted in its Attempts. It never fails: the event stays
// in memory whatever the queue's counts.
func (m *memDelivery) Retry(_ context.Context, delay time.Duration) error {
	ev := m.ev
	ev.Attempts++
	m.q.settled(m.l, &ev, true, time.Now().Add(delay))
	return nil
}

// permit returns the permit of the attempt, taken when it was handed out.
func (m *memDelivery) permit() permit { return m.p }

// settled ends one hand-out of ev from l; with retry, ev waits until at,
// and otherwise the next event of its order key, if any, goes to its lane.
func (q *memQueue) settled(l *lane, ev *Event, retry bool, at time.Time) {
	q.mu.Lock()
	l.out--
	q.out--
	var next inbound
	var more bool
	if !retry && ev.OrderKey != "" {
		next, more = q.nextOfKey(ev)
	}
	if retry {
		q.add(l)
		heap.Push(&q.waits, wait{at: at, lane: l, ev: ev})
	} else if l.held == 0 && l.out == 0 && !l.parked && (!more || next.e != l.e) {
		delete(q.lanes, l.e)
	}
	if more {
		q.toLane(next)
	}
	if q.closed && q.n.Load() == 0 && q.out == 0 {
		q.finish()
	}
	q.mu.Unlock()
	q.wake() // a slot is free, or the next timer may be sooner
}

// wait is a retry (ev set) or a parked lane (ev nil) due at a time.
type wait struct {
	at   time.Time
	lane *lane
	ev   *Event
}

type waitHeap []wait

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h waitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)        { *h = append(*h, x.(wait)) }
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = wait{}
	*h = old[:len(old)-1]
	return w
}

// fire moves the retries that are due into their lanes and puts the
// parked lanes whose time has come back in turn; with flush, all of them.
func (q *memQueue) fire(now time.Time, flush bool) {
	for len(q.waits) > 0 && (flush || !q.waits[0].at.After(now)) {
		w := heap.Pop(&q.waits).(wait)
		l := w.lane
		if w.ev != nil {
			l.push(*w.ev)
		} else {
			l.parked = false
		}
		q.enqueue(l)
	}
}

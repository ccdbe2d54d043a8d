package callback

// The memory queue's order keys (WithOrderKey). An event under a key
// that has no event pending goes into its endpoint's lane like any other;
// the key's later events wait in the key's line, outside the lanes, and
// hold no worker and no place in a lane. When the event out is settled
// for good (acked or dead-lettered, not retried), the next event of the
// line goes to the back of its endpoint's lane. A retried event keeps
// its key: its line waits while the retry waits.
//
// A line exists only while its key has an event pending, so keys that
// come and go (a conversation per line, millions a day) cost nothing once
// delivered; the map of lines is made anew when it empties after a peak,
// as a Go map keeps the room of its largest size.

// The lines are found by a hash of the app and the key (keyHash): a map
// with uint64 keys is looked up in a third of the time of one keyed by
// app and string. The string is hashed once per context, by WithOrderKey
// (keyStringHash, with a seed of the process), not by every After, and
// After mixes in the app before it takes inMu. Lines whose hashes
// collide are chained and told apart by their app and key.

// keyHash hashes an app's order key for q.keys: two apps' equal strings
// are two keys (their lines compare the app too).
func (q *memQueue) keyHash(app int, key string) uint64 {
	return keyHashOf(app, keyStringHash(key))
}

// keyHashOf is keyHash of the key whose keyStringHash is kh.
func keyHashOf(app int, kh uint64) uint64 { return kh ^ uint64(app)*0x9e3779b97f4a7c15 }

// keyLine is the events of one order key behind the one pending (in a
// lane, out or waiting for a retry), in After's order.
type keyLine struct {
	app int
	key string
	// chain is the next line whose key has the same hash; nil for none.
	chain *keyLine
	evs   lineFifo
	// last names the latest event accepted under the key: the one the
	// next event waits for.
	last eventRef
}

// line returns the line of app's key, of hash h, or nil; under inMu.
func (q *memQueue) line(h uint64, app int, key string) *keyLine {
	for l := q.keys[h]; l != nil; l = l.chain {
		if l.app == app && l.key == key {
			return l
		}
	}
	return nil
}

// eventRef names an event for the attempt log: by its given ID, or by
// its number when the Dispatcher names it (see Dispatcher.eventID).
type eventRef struct {
	id  string
	seq uint64
}

func refOf(ev *Event) eventRef { return eventRef{id: ev.ID, seq: ev.seq} }

func (k *keyLine) len() int { return k.evs.n }

// lineChunk is how many events one chunk of a line holds: fewer than a
// lane's, as most lines are short and there may be many.
const lineChunk = 16

// lineFifo is a fifo of events in chunks of lineChunk (see fifo).
type lineFifo struct {
	head, tail *lineChunkOf
	hi, ti     int // next to pop in head, next free in tail
	n          int
}

type lineChunkOf struct {
	evs  [lineChunk]inbound
	next *lineChunkOf
}

func (f *lineFifo) push(in inbound) {
	if f.tail == nil || f.ti == lineChunk {
		c := new(lineChunkOf)
		if f.tail == nil {
			f.head, f.hi = c, 0
		} else {
			f.tail.next = c
		}
		f.tail, f.ti = c, 0
	}
	f.tail.evs[f.ti] = in
	f.ti++
	f.n++
}

func (f *lineFifo) peek() *inbound { return &f.head.evs[f.hi] }

func (f *lineFifo) pop() inbound {
	in := f.head.evs[f.hi]
	f.head.evs[f.hi] = inbound{} // let the body go
	f.hi++
	f.n--
	switch {
	case f.n == 0:
		f.hi, f.ti = 0, 0 // head == tail: reuse it from the start
		f.head.next = nil
		f.tail = f.head
	case f.hi == lineChunk:
		old := f.head
		f.head, f.hi = old.next, 0
		old.next = nil
	}
	return in
}

// Bounds of the reuse of lines: how many emptied lines are kept, with
// the one chunk each keeps.
const (
	spareLines = 256
	// keysRemake is the size from which an emptied map of lines is made
	// anew.
	keysRemake = 1024
)

// queueKeyed takes a keyed event, whose key has hash h, in under inMu:
// it reports whether the event goes to its lane now (its key had nothing
// pending) and, when it waits, the event it waits for.
func (q *memQueue) queueKeyed(h uint64, e *urlState, ev *Event) (now bool, ahead eventRef) {
	l := q.line(h, ev.AppID, ev.OrderKey)
	if l == nil {
		if n := len(q.spare); n > 0 {
			l = q.spare[n-1]
			q.spare[n-1] = nil
			q.spare = q.spare[:n-1]
		} else {
			l = &keyLine{}
		}
		l.app, l.key, l.last = ev.AppID, ev.OrderKey, refOf(ev)
		l.chain = q.keys[h]
		q.keys[h] = l
		q.nkeys++
		q.keysPeak = max(q.keysPeak, q.nkeys)
		return true, eventRef{}
	}
	ahead = l.last
	l.last = refOf(ev)
	l.evs.push(inbound{e: e, ev: *ev})
	q.keyWait++
	return false, ahead
}

// nextOfKey is called, with mu held, when the event of ev's key that was
// pending is settled for good: it returns the key's next event, which
// goes to its lane, or forgets the key when none is left.
func (q *memQueue) nextOfKey(ev *Event) (inbound, bool) {
	return q.nextOfKeyHashed(q.keyHash(ev.AppID, ev.OrderKey), ev)
}

// nextOfKeyHashed is nextOfKey with ev's key hashed to h.
func (q *memQueue) nextOfKeyHashed(h uint64, ev *Event) (inbound, bool) {
	q.inMu.Lock() // after mu, as intake takes them
	defer q.inMu.Unlock()
	var prev *keyLine
	l := q.keys[h]
	for l != nil && (l.app != ev.AppID || l.key != ev.OrderKey) {
		prev, l = l, l.chain
	}
	if l == nil {
		return inbound{}, false // not queued under its key (a test's Put)
	}
	if l.len() > 0 {
		q.keyWait--
		return l.evs.pop(), true
	}
	switch {
	case prev != nil:
		prev.chain = l.chain
	case l.chain != nil:
		q.keys[h] = l.chain
	default:
		delete(q.keys, h)
	}
	q.nkeys--
	if len(q.spare) < spareLines {
		*l = keyLine{evs: l.evs} // the line keeps its emptied chunk
		q.spare = append(q.spare, l)
	}
	if q.nkeys == 0 && q.keysPeak >= keysRemake {
		q.keys, q.keysPeak = make(map[uint64]*keyLine), 0
	}
	return inbound{}, false
}

// toLane puts an event counted already into its endpoint's lane, with
// mu held.
func (q *memQueue) toLane(in inbound) {
	l := q.lanes[in.e]
	if l == nil {
		l = &lane{e: in.e}
		q.lanes[in.e] = l
	}
	l.push(in.ev)
	l.held++
	q.enqueue(l)
}

// keyCount returns how many order keys have an event pending.
func (q *memQueue) keyCount() int {
	q.inMu.Lock()
	defer q.inMu.Unlock()
	return q.nkeys
}

// waitingForKey returns how many events wait behind an earlier event of
// their order key.
func (q *memQueue) waitingForKey() int {
	q.inMu.Lock()
	defer q.inMu.Unlock()
	return q.keyWait
}

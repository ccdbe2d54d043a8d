package callback

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// The memory queue keeps a line only for an order key with an event
// pending: after 5,000 keys' events are delivered it holds none, its map
// of lines is made anew, and it keeps no more spare lines than its bound.
func TestMemQueueKeysShrinkBack(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		_, _ = w.Write([]byte(`{"code":0}`))
	}))
	defer srv.Close()
	const keys, each = 5000, 2
	d, err := New(Config{URL: srv.URL, QueueSize: keys * each, AfterLimit: AfterLimit{Rate: -1}, Breaker: Breaker{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	most := 0
	for n := range each {
		for k := range keys {
			ctx := WithOrderKey(context.Background(), "conversation-"+strconv.Itoa(k))
			if err := d.After(ctx, 1, "group.message.after", []byte(`{"n":`+strconv.Itoa(n)+`}`)); err != nil {
				t.Fatal(err)
			}
			most = max(most, d.mem.keyCount())
		}
	}
	if most < keysRemake {
		t.Fatalf("at most %d keys were pending at once: the test shows nothing", most)
	}
	deadline := time.Now().Add(60 * time.Second)
	for got.Load() < keys*each || d.mem.keyCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered, %d keys still held", got.Load(), keys*each, d.mem.keyCount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	q := d.mem
	q.mu.Lock()
	q.inMu.Lock()
	defer q.inMu.Unlock()
	defer q.mu.Unlock()
	if len(q.keys) != 0 || q.nkeys != 0 || q.keysPeak != 0 {
		t.Errorf("%d keys held (%d hashes), peak %d since the map was made; want none (the map made anew)", q.nkeys, len(q.keys), q.keysPeak)
	}
	if len(q.spare) > spareLines {
		t.Errorf("%d spare lines kept, want at most %d", len(q.spare), spareLines)
	}
	if n := q.keyWait; n != 0 {
		t.Errorf("%d events counted as waiting for their key, want 0", n)
	}
}

// TestKeyLinesOfOneHash: lines whose keys hash alike are chained and told
// apart by app and key: each keeps its own events in order, and a line
// forgotten from the middle, the head or alone leaves the others whole.
func TestKeyLinesOfOneHash(t *testing.T) {
	q := newMemQueue(100, 100, 1, nil)
	const h = 42 // every key's hash: one chain
	evs := []Event{
		{AppID: 1, OrderKey: "a", seq: 1}, {AppID: 2, OrderKey: "a", seq: 2}, {AppID: 1, OrderKey: "b", seq: 3},
		{AppID: 1, OrderKey: "a", seq: 4}, {AppID: 2, OrderKey: "a", seq: 5}, {AppID: 1, OrderKey: "b", seq: 6},
	}
	for i := range evs {
		now, ahead := q.queueKeyed(h, nil, &evs[i])
		if i < 3 && (!now || ahead != (eventRef{})) {
			t.Fatalf("event %d: now %v, waits for %+v; want its key's first, sent now", i, now, ahead)
		}
		if i >= 3 && (now || ahead.seq != evs[i-3].seq) {
			t.Fatalf("event %d: now %v, waits for %d; want it to wait for %d", i, now, ahead.seq, evs[i-3].seq)
		}
	}
	if q.nkeys != 3 || len(q.keys) != 1 || q.keyWait != 3 {
		t.Fatalf("%d keys under %d hashes, %d waiting; want 3 keys under 1, 3 waiting", q.nkeys, len(q.keys), q.keyWait)
	}
	// The chain is (1,b), (2,a), (1,a): settle the middle, the head, the last.
	for _, i := range []int{1, 2, 0} {
		next, ok := q.nextOfKeyHashed(h, &evs[i])
		if !ok || next.ev.seq != evs[i+3].seq {
			t.Fatalf("after event %d: next %d (%v), want %d", i, next.ev.seq, ok, evs[i+3].seq)
		}
		if _, ok := q.nextOfKeyHashed(h, &next.ev); ok {
			t.Fatalf("after event %d: a third event of its key", i+3)
		}
		if l := q.line(h, evs[i].AppID, evs[i].OrderKey); l != nil {
			t.Fatalf("key (%d, %q) still held once settled", evs[i].AppID, evs[i].OrderKey)
		}
	}
	if q.nkeys != 0 || len(q.keys) != 0 || q.keyWait != 0 {
		t.Fatalf("%d keys under %d hashes, %d waiting; want none", q.nkeys, len(q.keys), q.keyWait)
	}
}

// TestLineFifoChunks: a line gives its events back in order across its
// chunks, pushes and pops interleaved, and an emptied line keeps its
// chunk: its next events, up to a chunk's worth, allocate nothing, in
// the line and in a spare line reused for another key.
func TestLineFifoChunks(t *testing.T) {
	var f lineFifo
	var pushed, popped uint64
	push := func(n int) {
		for range n {
			pushed++
			f.push(inbound{ev: Event{seq: pushed}})
		}
	}
	pop := func(n int) {
		for range n {
			popped++
			if got := f.peek().ev.seq; got != popped {
				t.Fatalf("peek: event %d, want %d", got, popped)
			}
			if got := f.pop().ev.seq; got != popped {
				t.Fatalf("pop: event %d, want %d", got, popped)
			}
		}
		if f.n != int(pushed-popped) {
			t.Fatalf("%d events counted, want %d", f.n, pushed-popped)
		}
	}
	for _, step := range [][2]int{{1, 1}, {3, 2}, {40, 10}, {200, 150}, {5, 86}, {300, 300}, {1, 1}} {
		push(step[0])
		pop(step[1])
	}
	if f.n != 0 || f.head == nil || f.head != f.tail || f.head.next != nil {
		t.Fatalf("emptied line: %d events, head %p, tail %p; want none, one chunk kept", f.n, f.head, f.tail)
	}
	kept := len(f.head.evs)
	if allocs := testing.AllocsPerRun(100, func() { push(kept); pop(kept) }); allocs != 0 {
		t.Errorf("an emptied line's next %d events allocated %.0f times, want none", kept, allocs)
	}

	// The same through the queue: a line settled for good goes to the
	// spare lines with its chunk, and the next key to wait reuses both.
	q := newMemQueue(1000, 1000, 1, nil)
	evs := make([]Event, 4) // made once: the test's own events allocate nothing
	var last Event
	cycle := func(key string, waiting int) {
		h := q.keyHash(1, key)
		for i := range evs[:waiting+1] {
			evs[i] = Event{AppID: 1, OrderKey: key, seq: uint64(i + 1)}
			q.queueKeyed(h, nil, &evs[i])
		}
		last = evs[0]
		for {
			next, ok := q.nextOfKeyHashed(h, &last)
			if !ok {
				break
			}
			last = next.ev
		}
	}
	cycle("a", 3)
	if len(q.spare) != 1 {
		t.Fatalf("%d spare lines after one key settled; want 1", len(q.spare))
	}
	if q.spare[0].evs.head == nil {
		t.Fatal("the spare line kept no chunk")
	}
	chunk := q.spare[0].evs.head
	if allocs := testing.AllocsPerRun(100, func() { cycle("b", 2) }); allocs != 0 {
		t.Errorf("a key's line taken from the spares allocated %.0f times, want none", allocs)
	}
	if len(q.spare) != 1 || q.spare[0].evs.head != chunk {
		t.Errorf("the spare line did not keep its chunk")
	}
	if q.nkeys != 0 || q.keyWait != 0 {
		t.Errorf("%d keys, %d waiting; want none", q.nkeys, q.keyWait)
	}
}

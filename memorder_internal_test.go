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

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
	if len(q.keys) != 0 || q.keysPeak != 0 {
		t.Errorf("%d keys held, peak %d since the map was made; want none (the map made anew)", len(q.keys), q.keysPeak)
	}
	if len(q.spare) > spareLines {
		t.Errorf("%d spare lines kept, want at most %d", len(q.spare), spareLines)
	}
	if n := q.keyWait.Load(); n != 0 {
		t.Errorf("%d events counted as waiting for their key, want 0", n)
	}
}

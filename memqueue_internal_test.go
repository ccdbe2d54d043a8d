package callback

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Puts racing from many goroutines fill the memory queue to QueueSize and
// each endpoint to EndpointQueueSize exactly, and after Stop every
// accepted event is handed out, in the order of its endpoint's Puts,
// before Get returns ErrClosed.
func TestMemQueueConcurrentPutsExact(t *testing.T) {
	d, err := New(Config{URL: "http://127.0.0.1:1/cb", Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	var routes [3]*route
	for i := range routes {
		if routes[i], err = newRoute(&d.s, &Endpoint{URL: "http://127.0.0.1:1/cb" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	const size, share, putters, each = 100, 40, 8, 60
	q := newMemQueue(size, share, 1, d.urls)
	var accepted [len(routes)]atomic.Int64
	var wg sync.WaitGroup
	for g := range putters {
		wg.Go(func() {
			for i := range each {
				r := (g + i) % len(routes)
				ev := Event{AppID: r, seq: uint64(g*each + i), route: routes[r], Queued: time.Now()}
				switch err := q.Put(context.Background(), ev); {
				case err == nil:
					accepted[r].Add(1)
				case !errors.Is(err, ErrQueueFull):
					t.Errorf("Put: got %v, want nil or ErrQueueFull", err)
				}
			}
		})
	}
	wg.Wait()
	total := int64(0)
	for r := range accepted {
		n := accepted[r].Load()
		if n > share {
			t.Errorf("endpoint %d: %d events accepted, want at most %d", r, n, share)
		}
		total += n
	}
	if total != size {
		t.Fatalf("%d events accepted in all, want exactly QueueSize %d", total, size)
	}
	if q.len() != size {
		t.Fatalf("len() = %d, want %d", q.len(), size)
	}
	q.Stop()
	if err := q.Put(context.Background(), Event{route: routes[0]}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Stop: got %v, want ErrClosed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // hand out at once, whatever the endpoints' state
	var got [len(routes)]int64
	last := map[[2]int]int{} // by endpoint and putter: the last i handed out
	for {
		dl, err := q.Get(ctx)
		if errors.Is(err, ErrClosed) {
			break
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		ev := dl.Event()
		got[ev.AppID]++
		k, i := [2]int{ev.AppID, int(ev.seq) / each}, int(ev.seq)%each
		if prev, ok := last[k]; ok && prev >= i {
			t.Fatalf("endpoint %d, putter %d: event %d handed out after %d", k[0], k[1], i, prev)
		}
		last[k] = i
		_ = dl.Ack(ctx)
	}
	for r := range got {
		if got[r] != accepted[r].Load() {
			t.Errorf("endpoint %d: %d events handed out, want the %d accepted", r, got[r], accepted[r].Load())
		}
	}
	if q.len() != 0 {
		t.Errorf("len() = %d after all were handed out, want 0", q.len())
	}
}

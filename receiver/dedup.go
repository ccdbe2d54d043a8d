package receiver

import (
	"container/list"
	"context"
	"net/http"
	"sync"
	"time"
)

// States of a remembered request.
const (
	handling = iota // its handler is running
	answered        // its handler succeeded: answer is kept
	failed          // its handler failed: a retry may try again
)

// dedup remembers recent webhook-ids for Config.Dedup: each for window
// after it was last seen, at most max at once. An ID is claimed before its
// handler runs, so a replay under another command or app is refused even
// while the first is being handled or after its handler failed. When max
// IDs are remembered and none has expired, a new ID is refused rather than
// let through unremembered.
type dedup struct {
	window time.Duration
	max    int

	mu    sync.Mutex               // guards ids and order
	ids   map[string]*list.Element // Value: *seen
	order *list.List               // of *seen, least recently seen first
}

// seen is one remembered webhook-id.
type seen struct {
	key    string
	who    string    // the command and app it came with
	last   time.Time // when it was last seen
	state  int
	answer []byte        // for answered
	done   chan struct{} // closed when handling ends
}

func newDedup(max int, window time.Duration) *dedup {
	return &dedup{window: window, max: max, ids: map[string]*list.Element{}, order: list.New()}
}

// claim looks key up for a request that is who. It returns the answer to
// repeat; or the entry the caller now owns, to run the handler and then call
// finish; or a rejection: the ID belongs to another request (a replay), no
// more IDs can be remembered, or ctx ended while another attempt of the
// same request was being handled.
func (d *dedup) claim(ctx context.Context, key, who string, now func() time.Time) ([]byte, *seen, *rejection) {
	for {
		d.mu.Lock()
		t := now()
		d.expire(t)
		el, ok := d.ids[key]
		if !ok {
			if len(d.ids) >= d.max {
				d.mu.Unlock()
				return nil, nil, reject(http.StatusServiceUnavailable, "too many recent webhook-ids to remember: Dedup is full")
			}
			e := &seen{key: key, who: who, last: t, state: handling, done: make(chan struct{})}
			d.ids[key] = d.order.PushBack(e)
			d.mu.Unlock()
			return nil, e, nil
		}
		e := el.Value.(*seen)
		if e.who != who {
			d.mu.Unlock()
			return nil, nil, reject(http.StatusConflict, "webhook-id already used by another request: a replay")
		}
		e.last = t
		d.order.MoveToBack(el)
		switch e.state {
		case answered:
			d.mu.Unlock()
			return e.answer, nil, nil
		case failed:
			e.state, e.done = handling, make(chan struct{})
			d.mu.Unlock()
			return nil, e, nil
		}
		done := e.done
		d.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, nil, reject(http.StatusServiceUnavailable, "request ended while another attempt of it was handled")
		}
	}
}

// finish ends the handling of e: answer is kept for repeats, or nil when the
// handler failed.
func (d *dedup) finish(e *seen, answer []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if answer != nil {
		e.state, e.answer = answered, answer
	} else {
		e.state = failed
	}
	close(e.done)
}

// expire forgets the IDs not seen for window. One still being handled is
// kept, as if seen now.
func (d *dedup) expire(now time.Time) {
	for el := d.order.Front(); el != nil; el = d.order.Front() {
		e := el.Value.(*seen)
		if now.Sub(e.last) < d.window {
			return
		}
		if e.state == handling {
			e.last = now
			d.order.MoveToBack(el)
			continue
		}
		delete(d.ids, e.key)
		d.order.Remove(el)
	}
}

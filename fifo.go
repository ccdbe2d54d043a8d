package callback

// chunkSize is how many events one chunk of a fifo holds.
const chunkSize = 64

// fifo is a queue of events in chunks, so that a long queue neither
// copies its events as it grows nor allocates per event.
type fifo[T any] struct {
	head, tail *chunk[T]
	hi, ti     int // next to pop in head, next free in tail
	n          int
	spare      *chunk[T] // the last emptied chunk, for reuse
}

type chunk[T any] struct {
	evs  [chunkSize]T
	next *chunk[T]
}

func (f *fifo[T]) push(ev T) {
	if f.tail == nil || f.ti == chunkSize {
		c := f.spare
		if c == nil {
			c = new(chunk[T])
		}
		f.spare = nil
		if f.tail == nil {
			f.head, f.hi = c, 0
		} else {
			f.tail.next = c
		}
		f.tail, f.ti = c, 0
	}
	f.tail.evs[f.ti] = ev
	f.ti++
	f.n++
}

// peek returns the next event pop would return; f must not be empty.
func (f *fifo[T]) peek() *T { return &f.head.evs[f.hi] }

func (f *fifo[T]) pop() T {
	ev := f.head.evs[f.hi]
	var zero T
	f.head.evs[f.hi] = zero // let the body go
	f.hi++
	f.n--
	switch {
	case f.n == 0:
		f.hi, f.ti = 0, 0 // head == tail: reuse it from the start
	case f.hi == chunkSize:
		old := f.head
		f.head, f.hi = old.next, 0
		old.next = nil
		f.spare = old
	}
	return ev
}

package callback

import (
	"context"
	"time"
)

// A Queue holds After events between After and their delivery. Config.Queue
// takes one; nil means a bounded queue in memory, which loses its events
// if the process ends. A durable Queue (the natsqueue package keeps events
// in NATS JetStream) keeps them across restarts and shares them among the
// IM server's nodes.
//
// The Queue stores events and hands them out; the Dispatcher keeps the
// policy: it numbers events (Event.ID, sent as webhook-id, is chosen by
// After and must be stored with the event so every hand-out, on every node,
// carries the same ID), makes one delivery attempt per hand-out, and then
// settles the Delivery with exactly one call:
//
//   - Ack when the App backend answered 2xx;
//   - Postpone (if the Delivery is a Postponer) or else Retry, with a
//     delay and no attempt made, when the event's endpoint cannot take an
//     attempt now: its circuit breaker is open or its After limits or its
//     share of the workers are used up;
//   - Retry with the next wait of Config.RetrySchedule when the attempt
//     failed and may succeed later (a transport error, 408, 429 or 5xx but
//     501), or with a wait of 0 when Close's deadline cut the attempt short:
//     the event must then be handed out again, to this or another node;
//   - DeadLetter after the last attempt of the schedule, or at once on a
//     permanent failure (another 4xx, a redirect, 501); the Dispatcher then
//     calls Config.DeadLetter and logs the event.
//
// If DeadLetter fails, the Dispatcher calls Retry instead, so the event is
// not lost. A Delivery that is never settled (its node crashed) must be
// handed out again by the Queue after a while of its choosing.
//
// Implementations must be safe for concurrent use: every worker calls Get
// and settles its own Deliveries.
type Queue interface {
	// Put stores ev, whose Attempts is 0. It returns nil only once the
	// event is stored as the Queue promises (for a durable Queue: once it
	// is persisted), an error wrapping ErrClosed after Stop, and an error
	// when ctx ends first or the event could not be stored. After returns
	// Put's error to its caller.
	Put(ctx context.Context, ev Event) error

	// Get blocks until an event is handed out to the calling worker and
	// returns it, with Event.Attempts set to the number of earlier
	// hand-outs (those postponed with Postponer.Postpone left out). After Stop it hands out only the events that the Queue
	// would otherwise lose, then returns an error wrapping ErrClosed. It
	// returns ctx's error when ctx ends first; other errors are taken as
	// passing (the worker logs them, waits and calls Get again).
	Get(ctx context.Context) (Delivery, error)

	// Stop ends intake at the start of Dispatcher.Close: Put returns
	// ErrClosed from now on and Get soon does too. Deliveries already
	// handed out stay valid and are settled before Close. Stop does not
	// block.
	Stop()

	// Close releases the Queue once every Delivery is settled and no Get
	// or Put is running. Dispatcher.Close calls it last, once; the
	// Dispatcher owns the Queue given in its Config.
	Close() error
}

// A Delivery is one hand-out of a queued event to a worker. Its methods
// are called by that worker only, and exactly one of Ack, Retry,
// DeadLetter and (for a Postponer) Postpone is called, once.
type Delivery interface {
	// Event returns the event. Attempts is the number of earlier
	// hand-outs of it.
	Event() Event
	// Ack removes the delivered event from the Queue.
	Ack(ctx context.Context) error
	// Retry hands the event out again after delay, to this or another
	// worker or node.
	Retry(ctx context.Context, delay time.Duration) error
	// DeadLetter removes the event from the Queue and keeps it where it
	// can be inspected and replayed; reason is why it was not delivered.
	DeadLetter(ctx context.Context, reason error) error
}

// DefaultRetrySchedule returns a copy of the waits used between the
// attempts of an event in a Queue when Config.RetrySchedule is nil: 5 s,
// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Svix's schedule).
func DefaultRetrySchedule() []time.Duration {
	return append([]time.Duration(nil), defaultRetrySchedule...)
}

// A Postponer is a Delivery that can hand its event back without the
// hand-out counting as an attempt: the next Get's Event.Attempts does not
// include it. The Dispatcher postpones an event of a Config.Queue, instead
// of waiting for its endpoint, when the endpoint cannot take an attempt
// now (circuit breaker open, AfterLimit reached, its share of the workers
// in use); a Delivery without Postpone is handed back with Retry, and the
// hand-out then counts against Config.RetrySchedule.
type Postponer interface {
	// Postpone hands the event out again after delay, as Retry does, and
	// settles the Delivery.
	Postpone(ctx context.Context, delay time.Duration) error
}

package callback

import (
	"context"
)

// maxEventID bounds an ID given with WithEventID. It travels as a header
// (webhook-id, Nats-Msg-Id) and in every log line about the event.
const maxEventID = 256

// eventIDKey marks a context that carries a caller's event ID.
type eventIDKey struct{}

// WithEventID returns a copy of ctx that makes the Before or After call
// made with it use id as the event's ID: the webhook-id header of each
// attempt (the App backend's idempotency key), Event.ID, and, with a
// durable Queue such as natsqueue's, the message ID under which the event
// is stored. Without it the Dispatcher numbers events itself.
//
// It makes After safe to retry: when After returns an error, the event may
// still have been stored (a durable Queue's publish timed out after the
// server had stored it). Called again with the same id, After stores it
// at most once within the Queue's duplicate window (natsqueue: the
// stream's, 2 min by default), and in any case every delivery carries the
// one id, so the App backend can drop the copy. The memory queue never
// stores an event when After fails, so a retry there queues it once too.
//
// id must be 1 to 256 bytes of printable ASCII without spaces, unique per
// event (for example the IM server's message key); After and Before return
// or report ErrInvalidEventID otherwise. One id serves the Before and the
// After of one message: the After sends it as given, the Before with
// BeforeIDSuffix ("/before") appended, so that an App backend that
// remembers IDs (package receiver with Dedup) sees two events, and matches
// the Before with its After by trimming the suffix.
func WithEventID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, eventIDKey{}, id)
}

// eventIDFrom returns the ID WithEventID put in ctx, if any, and an error
// wrapping ErrInvalidEventID when it is not a valid one.
func eventIDFrom(ctx context.Context) (id string, ok bool, err error) {
	id, ok = ctx.Value(eventIDKey{}).(string)
	if !ok {
		return "", false, nil
	}
	if !validEventID(id) {
		return "", true, ErrInvalidEventID
	}
	return id, true, nil
}

// validEventID reports whether id can be sent as a header value and a
// NATS message ID as it is.
func validEventID(id string) bool {
	if id == "" || len(id) > maxEventID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

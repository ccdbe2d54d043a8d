package callback

import (
	"context"
	"hash/maphash"
)

// maxOrderKey bounds an order key given with WithOrderKey. It travels in
// every record of the attempt log and, with natsqueue, in a header.
const maxOrderKey = 256

// orderKeyKey marks a context that carries an order key.
type orderKeyKey struct{}

// WithOrderKey returns a copy of ctx that makes the After call made with
// it queue its event under the order key key, typically a conversation:
// a group's ID, or a pair of users'. After events of one app with the same
// order key are delivered one at a time, in the order After accepted
// them: the next is sent only once the App backend has answered the one
// before it with a 2xx or that one was dead-lettered. A retry keeps the
// order: a failing event holds the events behind it under its key, and
// only those. Events without a key, and events under any other key, are
// delivered in parallel as before; the keys of two apps never share an
// order, even when the strings are equal.
//
// A key's events do not hold a worker while they wait: an event waiting
// behind its key is not handed out, and the one ahead holds a worker only
// for its attempt, as any event does (the endpoint's fair share and
// AfterLimit apply as without keys). When an event is dead-lettered, the
// rest of its key go on, in order. At Close, a key's remaining events are
// delivered in order within the drain time; past it the memory queue
// dead-letters them in order, and a durable Queue keeps them, in order,
// for another node or the next start.
//
// With natsqueue the order holds across nodes: the key's events are
// delivered in the order the stream stored them, wherever they are
// consumed.
//
// key must be 1 to 256 bytes of UTF-8 that print as themselves (no C0 or
// C1 control character, DEL or bidi control); After returns
// ErrInvalidOrderKey otherwise and queues nothing. Before ignores it.
func WithOrderKey(ctx context.Context, key string) context.Context {
	// The key is checked and hashed here, once per context, not by every
	// After made with it; the pointer spares the boxing of the string.
	v := &orderKeyValue{key: key, valid: key != "" && len(key) <= maxOrderKey && checkCommand(key) == nil}
	if v.valid {
		v.hash = keyStringHash(key)
	}
	return context.WithValue(ctx, orderKeyKey{}, v)
}

// orderKeyValue is what WithOrderKey puts in a context: the key, checked,
// and its keyStringHash.
type orderKeyValue struct {
	key   string
	hash  uint64
	valid bool
}

// orderKeyFrom returns the key WithOrderKey put in ctx, "" if none, with
// its keyStringHash, and ErrInvalidOrderKey when it is not a valid one.
func orderKeyFrom(ctx context.Context) (key string, hash uint64, err error) {
	v, _ := ctx.Value(orderKeyKey{}).(*orderKeyValue)
	switch {
	case v == nil:
		return "", 0, nil
	case !v.valid:
		return "", 0, ErrInvalidOrderKey
	}
	return v.key, v.hash, nil
}

// keySeed seeds keyStringHash: one per process, random.
var keySeed = maphash.MakeSeed()

// keyStringHash hashes an order key's string, as the memory queue finds
// its line by (see memQueue.keyHash).
func keyStringHash(key string) uint64 { return maphash.String(keySeed, key) }

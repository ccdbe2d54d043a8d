package callback

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"unsafe"

	"github.com/imcallback/callback/internal/answer"
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
// is stored (together with its app: the same id under two apps is two
// events). Without it the Dispatcher makes an ID itself: "msg_" and 26
// characters of base32 (A-Z, 2-7) that carry 128 bits of a keyed
// permutation of the event's number, so that nobody who sees some IDs can
// predict the next ones or count the events made in between.
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
// event of an app (for example the IM server's message key), and not of the
// Dispatcher's own shape ("msg_" and 26 characters A-Z or 2-7, 30 bytes in
// all), so that an id a tenant chose can never be one the Dispatcher makes
// for another event; After and Before return or report ErrInvalidEventID
// otherwise. One id serves the Before and the After of one message: the
// After sends it as given, the Before with BeforeIDSuffix ("/before")
// appended, so that an App backend that remembers IDs (package receiver
// with Dedup) sees two events, and matches the Before with its After by
// trimming the suffix.
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
	// A relaying tool (answer.ExactID) resends another Dispatcher's ID.
	if !validEventID(id) || isAutoID(id) && !answer.IsExactID(ctx) {
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

// The IDs the Dispatcher makes itself: autoIDPrefix and the base32 of
// autoIDBits bits.
const (
	autoIDPrefix = "msg_"
	autoIDBits   = 128
	autoIDLen    = len(autoIDPrefix) + (autoIDBits+4)/5
)

var autoIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newIDCipher returns AES-256 under a random key: eventID's permutation.
func newIDCipher() cipher.Block {
	var k [32]byte
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails (Go 1.24+)
	b, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err) // not reached: the key has a valid length
	}
	return b
}

// eventID returns the webhook-id of the event numbered seq, the same on
// each of its attempts: autoIDPrefix and the 128 bits of seq's block
// encrypted with AES-256 under the Dispatcher's random key, a
// pseudo-random permutation of seq. The IDs of one Dispatcher never
// repeat (a permutation), and those of two differ but by a chance of
// 2^-128 a pair; without the key, one ID tells nothing of another, so a
// tenant can neither predict the IDs of other tenants' events nor count
// them. One block costs about a quarter of the SHA-256 it replaces (40
// against 120-160 ns, less cache-cold code per call). The block's
// Encrypt only reads its expanded key, so every goroutine shares it. One
// allocation, as with the counter it replaces: the block is encrypted in
// the tail of the string's own memory, since a buffer handed to Encrypt,
// an interface method, escapes and would be a second allocation.
func (d *Dispatcher) eventID(seq uint64) string {
	buf := make([]byte, autoIDLen+aes.BlockSize)
	id, block := buf[:autoIDLen], buf[autoIDLen:]
	binary.BigEndian.PutUint64(block[aes.BlockSize-8:], seq)
	d.ids.Encrypt(block, block)
	copy(id, autoIDPrefix)
	autoIDEncoding.Encode(id[len(autoIDPrefix):], block[:autoIDBits/8])
	// buf is not written again: the string is its first autoIDLen bytes.
	return unsafe.String(unsafe.SliceData(id), len(id))
}

// isAutoID reports whether id has the shape of the IDs eventID makes.
func isAutoID(id string) bool {
	if len(id) != autoIDLen || id[:len(autoIDPrefix)] != autoIDPrefix {
		return false
	}
	for i := len(autoIDPrefix); i < len(id); i++ {
		if c := id[i]; (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

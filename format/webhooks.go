package format

import (
	"crypto/subtle"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imcallback/callback/internal/wire"
)

// DefaultWebhookTolerance is how far a Standard Webhooks timestamp may be
// from the receiver's clock by default, either way: 5 minutes, as the
// specification asks.
const DefaultWebhookTolerance = 5 * time.Minute

// Webhooks signs and verifies Standard Webhooks signatures
// (https://www.standardwebhooks.com): the webhook-timestamp and
// webhook-signature headers, "v1," + base64(HMAC-SHA256(key, id + "." +
// timestamp + "." + body)) per key. AppCommand and OpenIM sign with it;
// a Format of your own may too. It is safe for concurrent use.
type Webhooks struct {
	keys []*macPool // one signature each; none: unkeyed
	raw  [][]byte
}

// macPool keeps keyed MACs, so that signing on Before's hot path does not
// set up a new one each time.
type macPool struct{ sync.Pool }

// NewWebhooks parses secret: Standard Webhooks secrets ("whsec_" and the
// standard base64 of a 24 to 64 byte key) separated by spaces; empty
// means unkeyed, signing and verifying nothing. Its error never contains
// the secret.
func NewWebhooks(secret string) (*Webhooks, error) {
	raw, err := wire.ParseSecrets(secret)
	if err != nil {
		return nil, err
	}
	w := &Webhooks{raw: raw}
	for _, key := range raw {
		p := &macPool{}
		p.New = func() any { return wire.NewMAC(key) }
		w.keys = append(w.keys, p)
	}
	return w, nil
}

// Keyed reports whether w has a key: whether Sign and Verify do anything.
func (w *Webhooks) Keyed() bool { return len(w.keys) > 0 }

// Sign sets h's webhook-timestamp (now, in unix seconds) and
// webhook-signature for the event id and body, one signature per key,
// space-separated. The webhook-id header itself is the caller's (the
// Dispatcher sets it on every request). Unkeyed, it does nothing.
func (w *Webhooks) Sign(h http.Header, id string, body []byte, now time.Time) {
	if len(w.keys) == 0 {
		return
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	head := wire.AppendSignedHead(make([]byte, 0, len(id)+len(ts)+2), id, ts)
	sig := make([]byte, 0, len(w.keys)*(wire.SignatureLen+1)+wire.SignatureScratch-wire.SignatureLen)
	for i, k := range w.keys {
		mac := k.Get().(hash.Hash)
		if i > 0 {
			sig = append(sig, ' ')
		}
		sig = wire.AppendSignature(sig, mac, head, body)
		k.Put(mac)
	}
	h[wire.HeaderTimestamp] = []string{ts}
	h[wire.HeaderSignature] = []string{string(sig)}
}

// Verify checks h's Standard Webhooks headers (or Svix's: svix-id,
// svix-timestamp, svix-signature) against body at now: the timestamp
// within tolerance either way, and one signature made with one of w's
// keys. Its error is a 401 *RequestError. Unkeyed, it accepts anything.
func (w *Webhooks) Verify(h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if len(w.keys) == 0 {
		return nil
	}
	id, ts, sigs := wire.WebhookHeaders(h)
	if id == "" || ts == "" || sigs == "" {
		return Unverified("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	if err := CheckTime("webhook-timestamp", ts, now, tolerance); err != nil {
		return err
	}
	head := wire.AppendSignedHead(nil, id, ts)
	want := make([]byte, 0, wire.SignatureScratch)
	for _, key := range w.raw {
		want = wire.AppendSignature(want[:0], wire.NewMAC(key), head, body)
		for rest := sigs; rest != ""; {
			var sig string
			sig, rest, _ = strings.Cut(rest, " ")
			if len(sig) == len(want) && subtle.ConstantTimeCompare([]byte(sig), want) == 1 {
				return nil
			}
		}
	}
	return Unverified("no webhook-signature matches")
}

// WebhookID returns h's webhook-id, or its svix-id when it has no
// webhook-* header.
func WebhookID(h http.Header) string {
	id, _, _ := wire.WebhookHeaders(h)
	return id
}

// CheckTime returns a 401 *RequestError for a unix-seconds timestamp ts,
// the value of the parameter or header name, that does not parse or is
// more than tolerance away from now.
func CheckTime(name, ts string, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Unverified("%s is not unix seconds", name)
	}
	n, tol := now.Unix(), int64(tolerance/time.Second)
	if sec < n-tol {
		return Unverified("%s is too old: more than %ds ago", name, tol)
	}
	if sec > n+tol {
		return Unverified("%s is too new: more than %ds ahead", name, tol)
	}
	return nil
}

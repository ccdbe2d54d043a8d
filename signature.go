package callback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/imcallback/callback/internal/whsec"
)

// Standard Webhooks (https://www.standardwebhooks.com) signing, used by the
// Seed format when Config.Secret is set.
const (
	// signatureVersion prefixes each signature in webhook-signature.
	signatureVersion = "v1,"
)

// signingKey is one HMAC-SHA256 key. Its pool keeps keyed MACs, so that
// signing on Before's hot path does not set up a new one each time.
type signingKey struct {
	macs sync.Pool // of hash.Hash
}

func newSigningKey(key []byte) *signingKey {
	k := &signingKey{}
	k.macs.New = func() any { return hmac.New(sha256.New, key) }
	return k
}

// parseSecrets reads Config.Secret for the Seed format: space-separated
// whsec_ secrets. Errors never contain the secret.
func parseSecrets(secret string) ([]*signingKey, error) {
	raw, err := whsec.Keys(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	keys := make([]*signingKey, 0, len(raw))
	for _, k := range raw {
		keys = append(keys, newSigningKey(k))
	}
	return keys, nil
}

func newSeedWire(secret string) (*seedWire, error) {
	keys, err := parseSecrets(secret)
	if err != nil {
		return nil, err
	}
	return &seedWire{keys: keys}, nil
}

func (w *seedWire) signs() bool { return len(w.keys) > 0 }

// sign sets webhook-timestamp and webhook-signature: for each key,
// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)),
// space-separated. The core sets webhook-id.
func (w *seedWire) sign(req *http.Request, id string, body []byte, now time.Time) {
	// head is "{id}.{timestamp}.", the signed content before the body.
	head := make([]byte, 0, len(id)+22)
	head = append(head, id...)
	head = append(head, '.')
	head = strconv.AppendInt(head, now.Unix(), 10)
	ts := head[len(id)+1:]
	head = append(head, '.')
	sig := make([]byte, 0, len(w.keys)*(len(signatureVersion)+base64.StdEncoding.EncodedLen(sha256.Size)+1))
	var sum [sha256.Size]byte
	for i, k := range w.keys {
		mac := k.macs.Get().(hash.Hash)
		mac.Reset()
		_, _ = mac.Write(head)
		_, _ = mac.Write(body)
		if i > 0 {
			sig = append(sig, ' ')
		}
		sig = append(sig, signatureVersion...)
		sig = base64.StdEncoding.AppendEncode(sig, mac.Sum(sum[:0]))
		k.macs.Put(mac)
	}
	req.Header["Webhook-Timestamp"] = []string{string(ts)}
	req.Header["Webhook-Signature"] = []string{string(sig)}
}

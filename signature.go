package callback

import (
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/imcallback/callback/internal/wire"
)

// signingKey is one HMAC-SHA256 key. Its pool keeps keyed MACs, so that
// signing on Before's hot path does not set up a new one each time.
type signingKey struct {
	macs sync.Pool // of hash.Hash
}

func newSigningKey(key []byte) *signingKey {
	k := &signingKey{}
	k.macs.New = func() any { return wire.NewMAC(key) }
	return k
}

// parseSecrets reads Config.Secret for the AppCommand format: space-separated
// whsec_ secrets. Errors never contain the secret.
func parseSecrets(secret string) ([]*signingKey, error) {
	raw, err := wire.ParseSecrets(secret)
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
// space-separated (wire.AppendSignature). The core sets webhook-id.
func (w *seedWire) sign(req *http.Request, id string, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	head := wire.AppendSignedHead(make([]byte, 0, len(id)+len(ts)+2), id, ts)
	sig := make([]byte, 0, len(w.keys)*(wire.SignatureLen+1)+wire.SignatureScratch-wire.SignatureLen)
	for i, k := range w.keys {
		mac := k.macs.Get().(hash.Hash)
		if i > 0 {
			sig = append(sig, ' ')
		}
		sig = wire.AppendSignature(sig, mac, head, body)
		k.macs.Put(mac)
	}
	req.Header[wire.HeaderTimestamp] = []string{ts}
	req.Header[wire.HeaderSignature] = []string{string(sig)}
}

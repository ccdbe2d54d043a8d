package receiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback/internal/whsec"
)

// verifier is one protocol's side of a request: how it is authenticated and
// addressed.
type verifier interface {
	// verify authenticates a request received at now; nil means genuine
	// (or nothing to check: no secret).
	verify(h http.Header, q url.Values, body []byte, now time.Time) *rejection
	// request reads the request's app ID, command and client from its
	// query.
	request(q url.Values) (*Request, *rejection)
	// signsID reports whether a verified request's webhook-id and body are
	// covered by its signature.
	signsID() bool
}

// Standard Webhooks secrets and signatures.
const (
	signatureVersion = "v1,"
)

// seedVerifier checks Standard Webhooks signatures.
type seedVerifier struct {
	keys      [][]byte
	tolerance int64 // seconds
}

func newSeedVerifier(secret string, tolerance time.Duration) (*seedVerifier, error) {
	keys, err := whsec.Keys(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &seedVerifier{keys: keys, tolerance: int64(tolerance / time.Second)}, nil
}

func (v *seedVerifier) verify(h http.Header, _ url.Values, body []byte, now time.Time) *rejection {
	if len(v.keys) == 0 {
		return nil
	}
	id, ts, sigs := webhookHeaders(h)
	if id == "" || ts == "" || sigs == "" {
		return reject(http.StatusUnauthorized, "missing webhook-id, webhook-timestamp or webhook-signature")
	}
	if rej := checkTime("webhook-timestamp", ts, now, v.tolerance); rej != nil {
		return rej
	}
	var sum [sha256.Size]byte
	var want [44]byte // base64 of a SHA-256
	for _, key := range v.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
		mac.Write(body)
		base64.StdEncoding.Encode(want[:], mac.Sum(sum[:0]))
		for rest := sigs; rest != ""; {
			var sig string
			sig, rest, _ = strings.Cut(rest, " ")
			got, ok := strings.CutPrefix(sig, signatureVersion)
			if ok && len(got) == len(want) && subtle.ConstantTimeCompare([]byte(got), want[:]) == 1 {
				return nil
			}
		}
	}
	return reject(http.StatusUnauthorized, "no webhook-signature matches")
}

// webhookHeaders returns a request's webhook-id, webhook-timestamp and
// webhook-signature headers; when it has none of them, Svix's svix-id,
// svix-timestamp and svix-signature, which carry the same values.
func webhookHeaders(h http.Header) (id, ts, sigs string) {
	id, ts, sigs = h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), h.Get("Webhook-Signature")
	if id == "" && ts == "" && sigs == "" {
		id, ts, sigs = h.Get("Svix-Id"), h.Get("Svix-Timestamp"), h.Get("Svix-Signature")
	}
	return id, ts, sigs
}

func (v *seedVerifier) signsID() bool { return len(v.keys) > 0 }

func (*seedVerifier) request(q url.Values) (*Request, *rejection) {
	cmd := q.Get("command")
	if cmd == "" {
		return nil, reject(http.StatusBadRequest, "missing command")
	}
	app, rej := parseAppID("appId", q.Get("appId"))
	if rej != nil {
		return nil, rej
	}
	return &Request{AppID: app, Command: cmd}, nil
}

// tencentVerifier checks Tencent's RequestTime and Sign.
type tencentVerifier struct {
	tokens    []string
	tolerance int64 // seconds
}

func newTencentVerifier(secret string, tolerance time.Duration) (*tencentVerifier, error) {
	return &tencentVerifier{tokens: strings.Fields(secret), tolerance: int64(tolerance / time.Second)}, nil
}

func (v *tencentVerifier) verify(_ http.Header, q url.Values, _ []byte, now time.Time) *rejection {
	if len(v.tokens) == 0 {
		return nil
	}
	ts, sign := q.Get("RequestTime"), q.Get("Sign")
	if ts == "" || sign == "" {
		return reject(http.StatusUnauthorized, "missing RequestTime or Sign")
	}
	if rej := checkTime("RequestTime", ts, now, v.tolerance); rej != nil {
		return rej
	}
	var sum [sha256.Size]byte
	var want [2 * sha256.Size]byte
	for _, token := range v.tokens {
		h := sha256.New()
		h.Write([]byte(token))
		h.Write([]byte(ts))
		hex.Encode(want[:], h.Sum(sum[:0]))
		if len(sign) == len(want) && subtle.ConstantTimeCompare([]byte(sign), want[:]) == 1 {
			return nil
		}
	}
	return reject(http.StatusUnauthorized, "Sign does not match")
}

func (*tencentVerifier) signsID() bool { return false }

func (*tencentVerifier) request(q url.Values) (*Request, *rejection) {
	cmd := q.Get("CallbackCommand")
	if cmd == "" {
		return nil, reject(http.StatusBadRequest, "missing CallbackCommand")
	}
	app, rej := parseAppID("SdkAppid", q.Get("SdkAppid"))
	if rej != nil {
		return nil, rej
	}
	return &Request{AppID: app, Command: cmd, ClientIP: q.Get("ClientIP"), Platform: q.Get("OptPlatform")}, nil
}

// checkTime rejects a unix-seconds timestamp that does not parse or is more
// than tolerance seconds away from now.
func checkTime(name, ts string, now time.Time, tolerance int64) *rejection {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return reject(http.StatusUnauthorized, "%s is not unix seconds", name)
	}
	n := now.Unix()
	if sec < n-tolerance {
		return reject(http.StatusUnauthorized, "%s is too old: more than %ds ago", name, tolerance)
	}
	if sec > n+tolerance {
		return reject(http.StatusUnauthorized, "%s is too new: more than %ds ahead", name, tolerance)
	}
	return nil
}

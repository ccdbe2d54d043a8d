package receiver

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback/internal/wire"
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

// seedVerifier checks Standard Webhooks signatures.
type seedVerifier struct {
	keys      [][]byte
	tolerance int64 // seconds
}

func newSeedVerifier(secret string, tolerance time.Duration) (*seedVerifier, error) {
	keys, err := wire.ParseSecrets(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &seedVerifier{keys: keys, tolerance: int64(tolerance / time.Second)}, nil
}

func (v *seedVerifier) verify(h http.Header, _ url.Values, body []byte, now time.Time) *rejection {
	if len(v.keys) == 0 {
		return nil
	}
	id, ts, sigs := wire.WebhookHeaders(h)
	if id == "" || ts == "" || sigs == "" {
		return reject(http.StatusUnauthorized, "missing webhook-id, webhook-timestamp or webhook-signature")
	}
	if rej := checkTime("webhook-timestamp", ts, now, v.tolerance); rej != nil {
		return rej
	}
	head := wire.AppendSignedHead(nil, id, ts)
	want := make([]byte, 0, wire.SignatureScratch)
	for _, key := range v.keys {
		want = wire.AppendSignature(want[:0], wire.NewMAC(key), head, body)
		for rest := sigs; rest != ""; {
			var sig string
			sig, rest, _ = strings.Cut(rest, " ")
			if len(sig) == len(want) && subtle.ConstantTimeCompare([]byte(sig), want) == 1 {
				return nil
			}
		}
	}
	return reject(http.StatusUnauthorized, "no webhook-signature matches")
}

func (v *seedVerifier) signsID() bool { return len(v.keys) > 0 }

func (*seedVerifier) request(q url.Values) (*Request, *rejection) {
	cmd := q.Get(wire.ParamCommand)
	if cmd == "" {
		return nil, reject(http.StatusBadRequest, "missing %s", wire.ParamCommand)
	}
	app, rej := parseAppID(wire.ParamAppID, q.Get(wire.ParamAppID))
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
	ts, sign := q.Get(wire.ParamRequestTime), q.Get(wire.ParamSign)
	if ts == "" || sign == "" {
		return reject(http.StatusUnauthorized, "missing %s or %s", wire.ParamRequestTime, wire.ParamSign)
	}
	if rej := checkTime(wire.ParamRequestTime, ts, now, v.tolerance); rej != nil {
		return rej
	}
	want := make([]byte, 0, wire.TencentSignLen)
	for _, token := range v.tokens {
		want = wire.AppendTencentSign(want[:0], token, ts)
		if len(sign) == len(want) && subtle.ConstantTimeCompare([]byte(sign), want) == 1 {
			return nil
		}
	}
	return reject(http.StatusUnauthorized, "Sign does not match")
}

func (*tencentVerifier) signsID() bool { return false }

func (*tencentVerifier) request(q url.Values) (*Request, *rejection) {
	cmd := q.Get(wire.ParamCallbackCommand)
	if cmd == "" {
		return nil, reject(http.StatusBadRequest, "missing %s", wire.ParamCallbackCommand)
	}
	app, rej := parseAppID(wire.ParamSdkAppID, q.Get(wire.ParamSdkAppID))
	if rej != nil {
		return nil, rej
	}
	return &Request{AppID: app, Command: cmd, ClientIP: q.Get(wire.ParamClientIP), Platform: q.Get(wire.ParamOptPlatform)}, nil
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

package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"net/http"
	"slices"
)

// Standard Webhooks (https://www.standardwebhooks.com) headers, in
// canonical form, and the headers Svix sends with the same values.
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"

	SvixHeaderID        = "Svix-Id"
	SvixHeaderTimestamp = "Svix-Timestamp"
	SvixHeaderSignature = "Svix-Signature"
)

// SignatureVersion starts each signature in HeaderSignature; several
// signatures are separated by a space.
const SignatureVersion = "v1,"

// SignatureLen is the length of one signature: SignatureVersion and the
// base64 of an HMAC-SHA256.
var SignatureLen = len(SignatureVersion) + base64.StdEncoding.EncodedLen(sha256.Size)

// WebhookHeaders returns h's webhook-id, webhook-timestamp and
// webhook-signature; when it has none of them, Svix's svix-id,
// svix-timestamp and svix-signature.
func WebhookHeaders(h http.Header) (id, ts, sigs string) {
	id, ts, sigs = h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" && ts == "" && sigs == "" {
		id, ts, sigs = h.Get(SvixHeaderID), h.Get(SvixHeaderTimestamp), h.Get(SvixHeaderSignature)
	}
	return id, ts, sigs
}

// NewMAC returns the MAC of Standard Webhooks signatures, HMAC-SHA256,
// keyed with key (a key ParseSecrets returned), for AppendSignature.
func NewMAC(key []byte) hash.Hash { return hmac.New(sha256.New, key) }

// AppendSignedHead appends the signed content before the body,
// id + "." + ts + ".", to b. ts is the webhook-timestamp as sent.
func AppendSignedHead(b []byte, id, ts string) []byte {
	b = append(b, id...)
	b = append(b, '.')
	b = append(b, ts...)
	return append(b, '.')
}

// AppendSignature appends one signature of head (from AppendSignedHead)
// and body to b: SignatureVersion + base64(HMAC-SHA256(key, head + body)).
// mac is NewMAC(key), in any state: AppendSignature resets it. It
// allocates nothing when b has SignatureScratch bytes of room.
func AppendSignature(b []byte, mac hash.Hash, head, body []byte) []byte {
	mac.Reset()
	_, _ = mac.Write(head)
	_, _ = mac.Write(body)
	b = append(b, SignatureVersion...)
	// The MAC is summed into b's spare room, past where its base64 goes,
	// rather than into an array that would escape to the heap through the
	// hash.Hash interface.
	n := len(b)
	enc := base64.StdEncoding.EncodedLen(sha256.Size)
	b = slices.Grow(b, enc+sha256.Size)
	sum := mac.Sum(b[n+enc : n+enc])
	base64.StdEncoding.Encode(b[n:n+enc], sum)
	return b[:n+enc]
}

// SignatureScratch is the room AppendSignature needs in its b for one
// signature: SignatureLen and the raw MAC it encodes.
var SignatureScratch = SignatureLen + sha256.Size

// TencentSignLen is the length of Tencent's Sign: the hex of a SHA-256.
const TencentSignLen = 2 * sha256.Size

// AppendTencentSign appends Tencent's Sign for token and requestTime (the
// RequestTime parameter as sent) to b: the lowercase hex of
// SHA-256(token + requestTime). Tencent signs neither the body nor the
// other parameters.
func AppendTencentSign(b []byte, token, requestTime string) []byte {
	h := sha256.New()
	_, _ = h.Write([]byte(token))
	_, _ = h.Write([]byte(requestTime))
	var sum [sha256.Size]byte
	return hex.AppendEncode(b, h.Sum(sum[:0]))
}

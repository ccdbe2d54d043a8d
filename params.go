package callback

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/goccy/go-json"

	"github.com/imcallback/callback/format"
)

// target is the callback URL prepared once by New, so that each call only
// appends its own query parameters.
type target struct {
	logURL string  // scheme://host/path, without user information or query
	base   url.URL // the URL parsed, user information kept, without query
	own    string  // the URL's own query, without the protocol's parameters
	host   string  // the Host header: base.Host without an empty port
}

// newTarget prepares u. Parameters of u's query that the protocol sets itself
// are dropped, so the protocol's values win; the others are kept.
func newTarget(u *url.URL, reserved ...string) target {
	own := u.Query()
	for _, k := range reserved {
		own.Del(k)
	}
	base := *u
	base.User = nil
	base.RawQuery = ""
	base.ForceQuery = false
	base.Fragment = ""
	base.RawFragment = ""
	log := base.String()

	t := target{logURL: log, host: strings.TrimSuffix(base.Host, ":")}
	t.own = own.Encode()
	full := log
	if u.User != nil {
		// Keep credentials in the request URL (Go sends them as basic auth)
		// but never in logURL.
		withUser := base
		withUser.User = u.User
		full = withUser.String()
	}
	// base is what http.NewRequest makes of the URL, parsed once here.
	if p, err := url.Parse(full); err == nil {
		base = *p
	} else {
		base.User = u.User // not reached: full is a URL's String
	}
	base.Host = t.host
	t.base = base
	return t
}

// newRequest returns the POST of body for call c in s's format,
// unsigned and before any Addresser. The URL is t's, parsed once by
// New, with only the query made per call: http.NewRequest would parse the
// whole URL again on every call.
func (t *target) newRequest(ctx context.Context, s format.Sender, c format.Call, body []byte) (*http.Request, error) {
	// An empty URL parses to an empty url.URL at no cost; it is then set.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	q := make([]byte, 0, len(t.own)+len(c.Command)+64) // room for the built-in formats' parameters
	q = append(q, t.own...)
	q = s.AppendQuery(q, c)
	if len(t.own) == 0 && len(q) > 0 && q[0] == '&' {
		q = q[1:]
	}
	*req.URL = t.base
	// q is not written again: its bytes can be the string's, which saves
	// a copy and an allocation per call.
	req.URL.RawQuery = unsafe.String(unsafe.SliceData(q), len(q))
	req.Host = t.host
	return req, nil
}

// validBody reports whether an event body may be sent: JSON in UTF-8, as
// RFC 8259 requires. json.Valid alone accepts invalid UTF-8 inside strings
// (encoding/json replaces it with U+FFFD only when decoding), which a
// receiver in another language may refuse or read differently and which
// Standard Webhooks verifiers that sign text cannot verify.
//
// The JSON check is goccy/go-json's, which accepts exactly what
// encoding/json's Valid does (FuzzValidBody checks it against
// encoding/json) at two to three times its speed from 4 KiB up. An object
// of objectCheckMin bytes or more, which most event bodies are, is checked
// by validObject instead (BenchmarkValidBody).
func validBody(body []byte) bool {
	if !utf8.Valid(body) {
		return false
	}
	if len(body) >= objectCheckMin && firstByte(body) == '{' {
		return validObject(body)
	}
	return json.Valid(body)
}

// objectCheckMin is the size from which validObject checks an object
// faster than json.Valid: below it, Valid is a few nanoseconds quicker;
// from 4 KiB of long text, validObject is three to four times quicker.
const objectCheckMin = 256

// validObject reports whether body, whose first byte but for white space
// is '{', is valid JSON, by decoding it into a struct of no fields:
// goccy/go-json then reads the object's members as it skips unknown
// fields, and scans a long string value with SIMD where the CPU has it
// (AVX2), where its Valid scans every string eight bytes at a time. The
// decoding allocates nothing and checks the whole grammar, the nesting
// limit and what follows the object, as Valid does (FuzzValidBody and
// TestValidBodyNesting compare both with encoding/json). No other error
// can come of a struct with no fields: an object is never of the wrong
// type for it.
func validObject(body []byte) bool {
	var none struct{}
	return json.Unmarshal(body, &none) == nil
}

// firstByte returns body's first byte that is not JSON white space, or 0.
func firstByte(body []byte) byte {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

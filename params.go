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
// json.Valid is goccy/go-json's, which accepts exactly what encoding/json's
// does (FuzzValidBody checks it against encoding/json) at two to three
// times its speed from 4 KiB up (BenchmarkValidBody).
func validBody(body []byte) bool {
	return utf8.Valid(body) && json.Valid(body)
}

package callback

import (
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/goccy/go-json"
)

// Query parameters of the seed protocol.
const (
	paramAppID   = "appId"
	paramCommand = "command"
)

// target is the callback URL prepared once by New, so that each call only
// appends its own query parameters.
type target struct {
	prefix string // scheme://host/path?own-query& : the URL up to our parameters
	logURL string // scheme://host/path, without user information or query
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
	log := base.String()

	prefix := log + "?"
	if q := own.Encode(); q != "" {
		prefix += q + "&"
	}
	if u.User != nil {
		// Keep credentials in the request URL (Go sends them as basic auth)
		// but never in logURL.
		withUser := base
		withUser.User = u.User
		prefix = withUser.String() + prefix[len(log):]
	}
	return target{prefix: prefix, logURL: log}
}

// url returns the request URL for call c in wire format w, unsigned.
func (t *target) url(w wire, c *call) string {
	b := make([]byte, 0, len(t.prefix)+len(c.command)+48)
	b = append(b, t.prefix...)
	b = w.appendQuery(b, c)
	return string(b)
}

// appendSeedQuery appends appId=..&command=.. to b.
func appendSeedQuery(b []byte, appID int, command string) []byte {
	b = append(b, paramAppID...)
	b = append(b, '=')
	b = strconv.AppendInt(b, int64(appID), 10)
	b = append(b, '&')
	b = append(b, paramCommand...)
	b = append(b, '=')
	return append(b, url.QueryEscape(command)...)
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

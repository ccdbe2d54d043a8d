// Package format is the callback wire format interface shared by both
// sides of imcallback: the IM server's Dispatcher (package callback), which
// addresses, signs and sends callbacks and reads the App backend's
// answers, and the App backend's receiver (package receiver), which
// verifies and addresses requests and writes answers.
//
// A Format is one wire format. The built-in ones are AppCommand (here, the
// zero Protocol), Tencent Cloud IM's (package tencent) and OpenIM's
// (package openim); each is implemented through this interface, and an
// IM server whose App backends speak another format implements it too:
//
//	var Mine = format.Register("mine", mineFormat{})
//
//	d, err := callback.New(callback.Config{URL: url, Protocol: Mine})
//	h, err := receiver.New(receiver.Config{Protocol: Mine})
//
// Package formattest holds the conformance tests every built-in format
// passes; run them on yours.
//
// The package imports nothing outside the standard library, so that an
// App backend built on package receiver stays light.
package format

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// CheckCommand is the reserved command of the probe callback that
// callback.Dispatcher.Check sends. Package receiver answers it with an
// allow by itself, without calling any handler.
const CheckCommand = "imcallback.check"

// BeforeIDSuffix is appended to the event ID that the IM server gives a
// Before call (callback.WithEventID) to make its webhook-id: the Before
// and the After of one message may be given one ID, and still reach the
// App backend as two events (a receiver that remembers IDs, Dedup, tells
// them apart). The App matches a Before with its After by trimming it:
// strings.TrimSuffix(beforeID, BeforeIDSuffix) == afterID.
const BeforeIDSuffix = "/before"

// ErrBadAnswer is wrapped by a Sender's Decode error for a 2xx answer that
// is not the format's: not JSON, or without its code. The Dispatcher then
// counts the callback as failed (Before applies its failure policy).
var ErrBadAnswer = errors.New("callback: App backend's answer is not valid")

// Action is what the IM server should do with the event.
type Action int

const (
	// Allow lets the event proceed, with the App backend's changes
	// (Decision.Data) applied when it made some.
	Allow Action = iota
	// Deny refuses the event; the Decision's Code and Msg are the App
	// backend's and may be passed to the client.
	Deny
	// Drop tells the sender the event succeeded while nobody receives it.
	Drop
)

// String returns "allow", "deny" or "drop".
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Drop:
		return "drop"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Decision is the App backend's answer to one callback, as a format
// carries it: what a receiver encodes and what a Sender decodes.
type Decision struct {
	// Action is what the IM server should do.
	Action Action
	// Code and Msg are the App's code and message, in the format's own
	// terms (AppCommand's code and msg, Tencent's ErrorCode and ErrorInfo,
	// OpenIM's errCode and errMsg); for Deny they may be passed on to the
	// IM client.
	Code int
	Msg  string
	// Data is the part of the answer that carries the App's changes to
	// the event, raw, in the format's own shape; nil when the App changed
	// nothing. Format.Apply applies it to the event's body. On the
	// receiving side it is a rewrite's payload: see receiver.Rewrite.
	Data json.RawMessage
}

// Call is what addresses one callback: the event's app, command and ID
// and the end user's device.
type Call struct {
	// AppID is the app the event belongs to. Formats that address no app
	// (OpenIM's) send none, and read it as 0.
	AppID int
	// Command names the event; never empty on the sending side.
	Command string
	// EventID is the event's ID: the same on every attempt of one event
	// (the Standard Webhooks webhook-id). On the receiving side it is
	// empty when the request carries none.
	EventID string
	// ClientIP and Platform describe the end user's device, as
	// callback.WithClient gives them; formats that carry no device
	// ignore them.
	ClientIP string
	Platform string
	// Signed, on the receiving side only, reports that the request's
	// signature was verified and covers EventID and the body, so that an
	// EventID reused with other content is a replay.
	Signed bool
}

// A Format is one callback wire format: how the IM server addresses and
// signs a callback and reads its answer (Sender), how the App backend
// verifies it and writes its answer (Receiver), and how the App's changes
// are applied to the event (Apply). Register makes a Protocol of it,
// selected per endpoint by callback.Config.Protocol,
// callback.Endpoint.Protocol and receiver.Config.Protocol.
//
// A Format's methods are called from many goroutines at once and must be
// safe for concurrent use; so must the Senders and Receivers it returns.
// A Format may keep no request, header, body or answer it is given beyond
// the call, nor change a body or answer it was lent.
type Format interface {
	// Sender returns the IM server's side of the format, keyed with
	// secret (empty: unsigned). The Dispatcher calls it once per endpoint
	// settings (at New, and when a Resolver returns new settings for an
	// app), not per call, so it is where a secret is parsed. Its error
	// means the secret cannot be used; it must not contain the secret.
	Sender(secret string) (Sender, error)

	// Receiver returns the App backend's side of the format, keyed with
	// secret (empty: no verification), accepting request timestamps
	// within tolerance of the receiver's clock (0: the format's default).
	// receiver.New calls it once. Its error means the secret or the
	// tolerance cannot be used; it must not contain the secret.
	Receiver(secret string, tolerance time.Duration) (Receiver, error)

	// Apply returns body, an event's JSON body, with data (the Data of a
	// Decision this format decoded) applied: the event as the App backend
	// changed it. It is called by callback.Response.Apply only when data
	// is not nil. It must not change body; it may return it. An error
	// means data cannot be applied to body.
	Apply(body []byte, data json.RawMessage) ([]byte, error)
}

// A Sender is the IM server's side of a Format, keyed with one endpoint's
// secret. The Dispatcher calls it on Before's and After's goroutines, many
// at once.
//
// A request is built in this order, each step by the Dispatcher unless
// said otherwise: the endpoint URL's own query without the Reserved
// parameters, then AppendQuery; Address, for a Sender that implements
// Addresser; the headers Content-Type (application/json), User-Agent and
// webhook-id (Call.EventID); then Sign, on every attempt, just before the
// request is sent.
type Sender interface {
	// Reserved lists the query parameters the format sets itself; an
	// endpoint URL's own values of them are dropped, so that the format's
	// win. The Dispatcher reads it once per endpoint.
	Reserved() []string

	// AppendQuery appends call c's query parameters that are the same on
	// every attempt to q, each as "&name=value" (escaped), and returns
	// the extended buffer. q holds the endpoint URL's own query, or
	// nothing; the Dispatcher drops a leading "&". It must not keep q
	// or the buffer it returns, whose bytes become the query string
	// without a copy.
	AppendQuery(q []byte, c Call) []byte

	// Sign readies one attempt of call c just before it is sent, at time
	// now: it may set headers and append "&name=value" parameters to
	// req.URL.RawQuery, and signs the attempt when the Sender is keyed.
	// It runs on every attempt, retries included, so that a timestamp it
	// signs is fresh. body is exactly the body sent, read-only. It must
	// not keep req, replace req.Body or send anything.
	Sign(req *http.Request, c Call, body []byte, now time.Time)

	// Decode reads the App backend's 2xx answer. The Dispatcher treats a
	// non-2xx status as a failure before any Decode. Decode must depend
	// on answer's bytes alone (the Dispatcher remembers the last plain
	// allow of each endpoint and skips decoding it again), must not keep
	// answer (a pooled buffer: copy what Data keeps), and returns an
	// error wrapping ErrBadAnswer when answer is not the format's.
	Decode(answer []byte) (Decision, error)
}

// An Addresser is a Sender that addresses calls by path, as OpenIM's
// POST <url>/<command> does. The Dispatcher calls Address with u, the
// request's own copy of the endpoint URL (its query already set), after
// AppendQuery; it may change u's Path and RawPath.
type Addresser interface {
	Address(u *url.URL, c Call)
}

// A Prober is a Sender with its own body for the probe of
// callback.Dispatcher.Check (command CheckCommand). Without it the probe's
// body is ProbeBody.
type Prober interface {
	ProbeBody() []byte
}

// ProbeBody is the body of callback.Dispatcher.Check's probe for a Sender
// that is not a Prober.
const ProbeBody = `{"imcallback":"check"}`

// A Receiver is the App backend's side of a Format, keyed with its
// secret: package receiver calls it on each request's goroutine, many at
// once.
type Receiver interface {
	// Read verifies a request received at now, whose body has been read
	// (exactly as received: r.Body is consumed), and reads its Call. A
	// request that fails verification is an error whose *RequestError
	// has status 401; a request without what addresses it (a command, an
	// app) one with status 400. With an error, Read returns the fields it
	// could read all the same, unverified, for logs and tests. It must
	// not keep r or body.
	Read(r *http.Request, body []byte, now time.Time) (Call, error)

	// Encode writes d as the format's answer, which the receiver sends
	// with status 200 and Content-Type application/json. An error means
	// the format cannot express d (for example a deny with the code the
	// format reads as allow); the receiver answers 500 then.
	Encode(d Decision) ([]byte, error)

	// Tolerance is how far a request's timestamp may be from the
	// receiver's clock: the Receiver's tolerance, its default resolved.
	// The receiver remembers event IDs for twice as long (Dedup).
	Tolerance() time.Duration
}

// RequestError is a request a Receiver refuses: Reason is said to the
// sender with HTTP status Status (401 for a signature or timestamp that
// does not verify, 400 for a request that is not the format's).
type RequestError struct {
	Status int
	Reason string
}

// Error returns e.Reason.
func (e *RequestError) Error() string { return e.Reason }

// Unverified returns the *RequestError of a request that fails
// verification: status 401 and the formatted reason.
func Unverified(format string, args ...any) error {
	return &RequestError{Status: http.StatusUnauthorized, Reason: fmt.Sprintf(format, args...)}
}

// BadRequest returns the *RequestError of a request that is not the
// format's: status 400 and the formatted reason.
func BadRequest(format string, args ...any) error {
	return &RequestError{Status: http.StatusBadRequest, Reason: fmt.Sprintf(format, args...)}
}

package callback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/imcallback/callback/format"
)

// CheckCommand is the reserved command of the probe callback that
// Dispatcher.Check sends. Its body is {"imcallback":"check"} (on Tencent
// and OpenIM, with the command repeated in it as "CallbackCommand" or
// "callbackCommand", as their bodies do). An App backend built on package
// receiver answers it with an allow by itself, without calling any
// handler; any other App backend should answer it as it answers a command
// it does not know, with an allow or a deny in the protocol's format.
const CheckCommand = format.CheckCommand

// checkBodyMax bounds the part of a non-2xx answer's body that a
// CheckError keeps.
const checkBodyMax = 1 << 10

// CheckError is the error of a failed Check: what a Before that fails
// open would have hidden.
type CheckError struct {
	// URL is the callback URL the probe went to, without its query or
	// user information; empty when the app could not be resolved.
	URL string
	// Status is the HTTP status of the answer; 0 when there was none.
	Status int
	// Body is the start of a non-2xx answer's body, at most 1 KiB, as
	// the App backend sent it (untrusted text: quote it before printing
	// it, as strconv.QuoteToGraphic does). It is never part of Error().
	Body []byte
	// Err wraps one of the sentinels listed with ErrUnreachable and the
	// underlying error.
	Err error
}

// Error describes the failure, without the answer's body.
func (e *CheckError) Error() string {
	if e.URL == "" {
		return "callback: check failed: " + e.Err.Error()
	}
	return "callback: check of " + e.URL + " failed: " + e.Err.Error()
}

// Unwrap returns e.Err.
func (e *CheckError) Unwrap() error { return e.Err }

// Check sends the probe callback CheckCommand to appID's endpoint through
// the same route, signing and transport as Before, and reports what a
// fail-open Before would hide: it returns nil when the App backend
// answered 2xx with an answer in the protocol (an allow or a deny alike:
// the probe checks the way there, not the App's rules), and otherwise a
// *CheckError saying why (see ErrUnreachable for the sentinels it wraps).
// Call it at start-up, or from a health check, to find a wrong URL, port,
// protocol or secret before the first event is let through unasked.
//
// The probe is bounded by the endpoint's timeout (Config.Timeout or the
// Endpoint's; CheckCommand's Rule if one is configured) and by ctx; a ctx
// that ends first is returned as its error, not as a CheckError. The probe
// ignores a Rule that disables CheckCommand, does not count in the
// endpoint's circuit breaker (it neither opens nor closes it, and is sent
// while it is open) nor in the metrics and Stats of commands, and is not
// logged. A closed Dispatcher returns ErrClosed.
func (d *Dispatcher) Check(ctx context.Context, appID int) error {
	if d.isClosed.Load() {
		return ErrClosed
	}
	r, err := d.routeOf(ctx, appID)
	if err != nil {
		return &CheckError{Err: err}
	}
	return d.check(ctx, appID, r)
}

// check sends the probe callback to appID's route r: see Check.
func (d *Dispatcher) check(ctx context.Context, appID int, r *route) error {
	fail := func(status int, body []byte, err error) error {
		return &CheckError{URL: r.target.logURL, Status: status, Body: body, Err: err}
	}
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, r.rule(CheckCommand).Timeout)
	defer cancel()
	body := probeBody(r.sender)
	id := d.eventID(d.seq.Add(1))
	c := format.Call{AppID: appID, Command: CheckCommand, EventID: id}
	req, err := r.newRequest(ctx, c, body)
	if err != nil {
		return fail(0, nil, fmt.Errorf("%w: %w", ErrUnreachable, r.redact(err)))
	}
	d.setHeaders(req.Header, id)
	r.sender.Sign(req, c, body, d.now())
	res, err := do(d.transport, req) // not through the breaker: see above
	if err != nil {
		if caller.Err() != nil {
			return caller.Err()
		}
		return fail(0, nil, checkFailure(r.redact(err), r.rule(CheckCommand).Timeout))
	}
	defer res.Body.Close()
	if err := checkStatus(res); err != nil {
		head, _ := io.ReadAll(io.LimitReader(res.Body, checkBodyMax))
		drain(res.Body)
		if res.StatusCode == http.StatusUnauthorized {
			err = fmt.Errorf("%w: %w", ErrSignatureRefused, err)
		}
		return fail(res.StatusCode, head, err)
	}
	var buf answerBuf
	if err := readAnswer(&buf, res.Body, d.s.MaxResponseBytes); err != nil {
		if caller.Err() != nil {
			return caller.Err()
		}
		if !errors.Is(err, ErrAnswerTooLarge) {
			// A timeout, or the connection broke before the whole answer.
			err = checkFailure(r.redact(err), r.rule(CheckCommand).Timeout)
		}
		return fail(res.StatusCode, nil, err)
	}
	if _, err := r.sender.Decode(buf.Bytes()); err != nil {
		return fail(res.StatusCode, nil, err)
	}
	return nil
}

// checkFailure classifies err, an error of the probe's request or of
// reading its answer: a timeout wraps ErrTimeout, anything else
// ErrUnreachable.
func checkFailure(err error, timeout time.Duration) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w (%v): %w", ErrTimeout, timeout, err)
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// probeBody is the probe's body in s's format.
func probeBody(s format.Sender) []byte {
	if p, ok := s.(format.Prober); ok {
		return p.ProbeBody()
	}
	return []byte(format.ProbeBody)
}

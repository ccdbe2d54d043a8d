package callback

import (
	"errors"

	"github.com/imcallback/callback/format"
)

// Errors of the package. Each is a sentinel whose message begins with
// "callback: ". The Dispatcher returns it wrapped with %w, with more
// context and sometimes beside another sentinel or a cause (an invalid
// Endpoint's error wraps both ErrResolve and ErrInvalidConfig), so
// compare with errors.Is, never with ==. They reach the caller in New's
// and After's errors, Before's Response.Err, a Check's CheckError and the
// error given to a DeadLetterFunc.
//
// A CheckError (Dispatcher.Check) wraps the underlying error and one or
// two of them: ErrUnreachable or ErrTimeout when no answer came;
// ErrStatus for a non-2xx answer (and ErrSignatureRefused for a 401);
// ErrRedirect; ErrBadAnswer or ErrAnswerTooLarge for an answer that is
// not the protocol's; ErrResolve for an app that cannot be resolved.
var (
	// ErrInvalidConfig is wrapped by New's error for a Config it rejects.
	ErrInvalidConfig = errors.New("callback: invalid config")
	// ErrClosed is returned by After, and set in Before's Response, once
	// Close has been called; it also ends deliveries that Close cut short.
	ErrClosed = errors.New("callback: dispatcher closed")
	// ErrQueueFull is returned by After when the delivery queue is full.
	ErrQueueFull = errors.New("callback: after queue full")
	// ErrInvalidBody means the event body given to Before or After is not
	// valid JSON in UTF-8 (RFC 8259); nothing was sent.
	ErrInvalidBody = errors.New("callback: body is not valid UTF-8 JSON")
	// ErrInvalidCommand means a command name is empty, not UTF-8, or holds
	// a character that is not printed as itself: a C0 control or DEL, a C1
	// control (U+0080 to U+009F) or a bidi control (U+061C, U+200E,
	// U+200F, U+202A to U+202E, U+2066 to U+2069). Before and After refuse
	// such a command with nothing sent or queued (the error names the
	// offending byte's position, never the name); New, Endpoint.Validate
	// and so a Resolver's Endpoint refuse such a name in Commands, with
	// ErrInvalidConfig too.
	ErrInvalidCommand = errors.New("callback: invalid command")
	// ErrInvalidEventID means the ID given with WithEventID is empty, longer
	// than 256 bytes, or has a byte outside printable ASCII (space and control
	// characters included); nothing was sent or queued.
	ErrInvalidEventID = errors.New("callback: invalid event ID")
	// ErrInvalidOrderKey means the key given with WithOrderKey is empty,
	// longer than 256 bytes, not UTF-8, or holds a control or bidi
	// character (the characters ErrInvalidCommand refuses); nothing was
	// queued.
	ErrInvalidOrderKey = errors.New("callback: invalid order key")

	// ErrStatus means the App backend answered with a status other than 2xx.
	ErrStatus = errors.New("callback: App backend answered a non-2xx status")
	// ErrRedirect means the App backend answered with a redirect, which is
	// never followed.
	ErrRedirect = errors.New("callback: App backend answered a redirect")
	// ErrBadAnswer means a 2xx answer could not be read as the protocol's
	// answer: not JSON, or without its code.
	ErrBadAnswer = format.ErrBadAnswer
	// ErrAnswerTooLarge means the answer was larger than
	// Config.MaxResponseBytes.
	ErrAnswerTooLarge = errors.New("callback: App backend's answer is too large")

	// ErrBreakerOpen is set in Before's Response.Err when the endpoint's circuit
	// breaker is open (or half-open with its probe call in flight): nothing was
	// sent, and the command's failure policy applies at once. Such refusals go
	// through the flood-controlled failure log like other failures (a summary
	// per Config.LogInterval); the breaker logs its own opening at Error level.
	ErrBreakerOpen = errors.New("callback: circuit breaker open")
	// ErrEndpointDisabled is set in Before's Response.Err, and wrapped by
	// the dead-letter error of an After event, when the app's endpoint is
	// disabled (see HealthPolicy and Dispatcher.EnableEndpoint): nothing
	// was sent. The failed attempt that disabled it for a 410 Gone answer
	// wraps it too.
	ErrEndpointDisabled = errors.New("callback: endpoint disabled")
	// ErrForbiddenAddress is wrapped by the transport error of a callback whose
	// App backend resolved to an address that Config.SSRFGuard refuses; no
	// connection was opened.
	ErrForbiddenAddress = errors.New("callback: address refused by the SSRF guard")

	// ErrUnknownApp means the Resolver has no endpoint for the app. A
	// Resolver returns it, wrapped or not, for an app it does not know.
	ErrUnknownApp = errors.New("callback: unknown app")
	// ErrResolve wraps every error of resolving an app's endpoint: the
	// Resolver's own (ErrUnknownApp, a database that is down) and an
	// Endpoint that is not valid (which also wraps ErrInvalidConfig).
	// Before sets it in Response.Err, After returns it.
	ErrResolve = errors.New("callback: resolving the app's endpoint failed")

	// ErrUnreachable means no connection could be made to the App
	// backend, or it broke before the whole answer came: a refused
	// connection, an unknown host, a TLS failure, a reset (CheckError's
	// Status is set when the answer's header had come).
	ErrUnreachable = errors.New("callback: App backend unreachable")
	// ErrTimeout means the App backend did not answer within the
	// command's timeout.
	ErrTimeout = errors.New("callback: App backend did not answer in time")
	// ErrSignatureRefused means the App backend answered 401, as package
	// receiver does to a request whose signature it does not accept (a
	// wrong or missing secret, or a clock too far off).
	ErrSignatureRefused = errors.New("callback: App backend refused the signature")

	// ErrNotFound means a record asked for by its ID, such as a dead letter
	// to replay, is not stored (never was, already replayed, or expired).
	ErrNotFound = errors.New("callback: not found")
)

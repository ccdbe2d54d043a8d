package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/imcallback/callback/format"
	"github.com/imcallback/callback/internal/answer"
	"github.com/imcallback/callback/internal/wire"
)

// Response is the outcome of a Before callback.
type Response struct {
	// Code and Msg are the App backend's code and message (AppCommand:
	// "code" and "msg"; Tencent: ErrorCode and ErrorInfo; OpenIM: errCode
	// and errMsg). When the Dispatcher decides by itself they are the
	// protocol's allow (AppCommand: 200 and "success"; Tencent and OpenIM:
	// 0 and "") or, for a FailClosed command whose callback failed, 503
	// and "callback failed".
	Code int
	Msg  string
	// Data is the part of the App backend's answer that carries its
	// changes to the event, raw JSON in the protocol's own shape, or nil
	// when the App changed nothing: AppCommand's "data"; Tencent's whole
	// answer when it has fields beyond ActionStatus, ErrorCode and
	// ErrorInfo (MsgBody, CloudCustomData, RefusedMembers_Account, ...);
	// OpenIM's whole answer when it has a field beyond the common ones
	// that is not null (content, userIDList, ...) or an errDlt. It is not
	// the event's new body: Apply makes that, in every protocol.
	Data json.RawMessage
	// Action is what the IM server should do.
	Action Action
	// Err is why the callback failed; nil when the App backend answered.
	Err error
	// Shadow is, under a shadow rule (Rule.Shadow), the Response the App
	// backend's answer would have made without it (Action, Code, Msg,
	// Data, Err), which Before did not enforce; nil otherwise. The
	// Response itself then allows, with the protocol's allow code and
	// message, no Data, and Err set when the callback failed.
	Shadow *Response
	// Protocol is the protocol of the app's endpoint, which Code, Msg and
	// Data are in (Config.Protocol when the app could not be resolved):
	// an IM server whose apps speak different protocols reads it here
	// rather than resolving the app again.
	Protocol Protocol
}

// Apply returns body, the event's body as given to Before, with the App
// backend's changes applied, so that the IM server needs no code of its
// own per protocol:
//
//	r := d.Before(ctx, appID, cmd, body)
//	if !r.OK() {
//		return r.Code, r.Msg // refused
//	}
//	body, err := r.Apply(body) // the message to deliver, and to send to After
//
// Without changes (Data nil, or an Action other than Allow) it returns body
// itself. Otherwise the protocol applies Data: AppCommand's "data" is the
// new body, whole; Tencent's MsgBody and CloudCustomData replace the
// body's, and its RefusedMembers_Account removes those accounts from the
// body's DestinationMembers and MemberList; OpenIM's fields that are not
// null replace the body's (its answer's atUserIDList and senderFaceURL
// are the body's atUserList and faceURL). A body or Data that cannot be
// combined (a body that is not a JSON object, for Tencent and OpenIM) is
// an error; body is never changed in place.
func (r Response) Apply(body []byte) ([]byte, error) {
	if r.Data == nil || r.Action != Allow {
		return body, nil
	}
	return r.Protocol.Format().Apply(body, r.Data)
}

// OK reports whether the event may proceed: r.Action == Allow.
func (r Response) OK() bool { return r.Action == Allow }

// Before asks the App backend whether the event may proceed and returns its
// decision. It blocks for at most the command's timeout (2 s by default) or
// until ctx ends, whichever comes first, and never retries.
//
// It never returns an error: when the callback fails (transport error,
// timeout, ctx done, non-2xx status, redirect, an answer that is not the
// protocol's or larger than MaxResponseBytes, an invalid body or command
// name (ErrInvalidCommand), a closed
// Dispatcher) the failure is logged at Error level and Before fails open:
// Allow with the protocol's own allow code and message (AppCommand: 200
// "success"; Tencent and OpenIM: 0 ""), with Err set. For a command whose Rule has
// FailClosed, it denies instead, with 503 "callback failed". A disabled
// command sends nothing and returns Allow with the protocol's allow code
// and message, Err nil.
//
// With a Config.Resolver, an app whose endpoint cannot be resolved (unknown,
// the resolver's store down, an invalid Endpoint) is such a failure, with
// Err wrapping ErrResolve, under Config.Commands' rule for the command (a
// command that rule disables is allowed, as ever, with nothing sent); its
// protocol is unknown then, so the allow code and message are
// Config.Protocol's.
//
// The call's ID is numbered by the Dispatcher, or is the ID that
// WithEventID put in ctx (an invalid one is such a failure, with Err
// wrapping ErrInvalidEventID); a given ID is sent as webhook-id with
// BeforeIDSuffix appended (unless it ends with it already), so that the
// After of the same message can be given the same ID (see WithEventID). The attempt log and the failure
// log carry the ID as given.
//
// body is sent byte for byte and not kept after Before returns.
func (d *Dispatcher) Before(ctx context.Context, appID int, command string, body []byte) Response {
	start := time.Now()
	r, err := d.routeOf(ctx, appID)
	rule := ruleOf(r, &d.s, command)
	if rule.Disabled {
		return allowed(d.protocolOf(r), nil) // nothing would be sent, resolved or not
	}
	if rule.Shadow {
		rule.FailClosed = false // a shadow rule never fails closed
	}
	stats := d.obs.beginBefore(command)
	ctx, span := d.trace.startBefore(ctx, r, appID, command)
	id, givenID, idErr := eventIDFrom(ctx)
	if !givenID || idErr != nil {
		id = d.eventID(d.seq.Add(1))
	}
	if err == nil {
		err = idErr
	}
	var resp Response
	if err == nil {
		wireID := id
		if givenID && !strings.HasSuffix(id, BeforeIDSuffix) && !answer.IsExactID(ctx) {
			wireID = id + BeforeIDSuffix // the After of the message sends id itself
		}
		resp, err = d.before(ctx, r, rule, appID, command, wireID, body, start)
	}
	if err != nil {
		resp = d.failed(ctx, r, rule, appID, command, id, start, err)
	}
	if rule.Shadow {
		resp = shadowed(resp, d.protocolOf(r))
	}
	took := d.beforeDone(ctx, stats, start, resp)
	d.attempts.before(ctx, r, appID, command, id, start, took, resp, body)
	endBefore(span, resp)
	return resp
}

func (d *Dispatcher) before(ctx context.Context, r *route, rule Rule, appID int, command, id string, body []byte, start time.Time) (Response, error) {
	if err := d.checkEvent(command, body); err != nil {
		return Response{}, err
	}
	if d.isClosed.Load() {
		return Response{}, ErrClosed
	}
	// Ask the endpoint's breaker first: while it is open, nothing is built.
	e := d.urls.forRoute(r)
	if err := e.refuse(r.disabled); err != nil {
		return Response{}, err // a disabled endpoint: see HealthPolicy
	}
	done, err := e.allow(start)
	if err != nil {
		return Response{}, err
	}
	dev := deviceFrom(ctx)
	c := format.Call{AppID: appID, Command: command, EventID: id, ClientIP: dev.ip, Platform: dev.platform}
	return d.call(ctx, r, rule, e, done, c, body)
}

// call sends the request of a Before call that e's breaker admitted, and
// reports its outcome with done. It and decodeAnswer are split from before so
// that each has few returns: the compiler then inlines their defers at
// each return (open-coded) instead of recording them on every call.
func (d *Dispatcher) call(ctx context.Context, r *route, rule Rule, e *urlState, done func(error), c format.Call, body []byte) (Response, error) {
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, rule.Timeout)
	defer cancel()
	// Only a call that may queue behind the connection cap needs the trace
	// that tells a pool wait from the App's failure (it costs about ten
	// allocations): one made while the Before calls in flight and the
	// After workers together reach MaxConnsPerHost. Below that no host,
	// however the calls spread over hosts, can be at its cap.
	reqCtx, wait := ctx, (*connWait)(nil)
	if n := d.beforeInFlight.Add(1); int(n)+d.s.Workers > d.s.MaxConnsPerHost {
		wait = new(connWait)
		reqCtx = wait.trace(ctx)
	}
	defer d.beforeInFlight.Add(-1) // after the answer's body is closed, which frees its connection
	req, err := r.newRequest(reqCtx, c, body)
	if err != nil {
		done(errAbandoned)
		return Response{}, err
	}
	d.setHeaders(req.Header, c.EventID)
	d.trace.inject(ctx, req.Header)
	r.sender.Sign(req, c, body, d.now())
	res, err := do(d.transport, req)
	out := wait.outcome(caller, res, err)
	e.observed(out, res)
	done(out)
	if err != nil {
		return Response{}, r.redact(err)
	}
	traceResponse(ctx, res)
	return d.decodeAnswer(ctx, r, e, res)
}

// decodeAnswer reads and decodes res, the App backend's answer to a Before
// call, and closes its body.
func (d *Dispatcher) decodeAnswer(ctx context.Context, r *route, e *urlState, res *http.Response) (Response, error) {
	defer res.Body.Close()
	if err := checkStatus(res); err != nil {
		keepStatusBody(ctx, res.Body)
		drain(res.Body)
		return Response{}, e.goneErr(res, err)
	}
	buf := getBuffer()
	defer putBuffer(buf)
	if err := readAnswer(buf, res.Body, d.s.MaxResponseBytes); err != nil {
		return Response{}, r.redact(err)
	}
	answer.Keep(ctx, buf.Bytes())
	return r.answers.decode(r.sender, r.protocol, buf.Bytes())
}

// shadowed returns the allowing Response of a shadow rule, with resp,
// the App backend's answer, in its Shadow.
func shadowed(resp Response, p Protocol) Response {
	out := allowed(p, resp.Err)
	out.Shadow = &resp
	return out
}

// failed logs a failed Before callback (flood-controlled) and returns the
// rule's failure policy, in r's protocol (nil: the app was not resolved).
func (d *Dispatcher) failed(ctx context.Context, r *route, rule Rule, appID int, command, id string, start time.Time, err error) Response {
	d.beforeLog.fail(ctx, failure{appID: appID, command: command, webhookID: id, elapsed: time.Since(start), failClosed: rule.FailClosed, err: err})
	if rule.FailClosed {
		return Response{Code: codeFailClosed, Msg: msgFailClosed, Action: Deny, Err: err, Protocol: d.protocolOf(r)}
	}
	return allowed(d.protocolOf(r), err)
}

// checkEvent rejects what must not be sent: an invalid command name (see
// checkCommand) or a body that is not UTF-8 JSON (with
// Config.TrustBodies, only an empty one).
func (d *Dispatcher) checkEvent(command string, body []byte) error {
	if err := checkCommand(command); err != nil {
		return err
	}
	if d.s.TrustBodies {
		if len(body) == 0 {
			return ErrInvalidBody
		}
		return nil
	}
	if !validBody(body) {
		return ErrInvalidBody
	}
	return nil
}

// The values of the fixed headers, made once and shared by every request:
// neither the transport nor the signing changes them.
var (
	contentTypeJSON = []string{"application/json"}
	userAgentValue  = []string{userAgent}
)

// setHeaders sets the headers every callback request carries.
func (d *Dispatcher) setHeaders(h http.Header, id string) {
	h["Content-Type"] = contentTypeJSON
	h["User-Agent"] = userAgentValue
	h[wire.HeaderID] = []string{id}
}

// checkStatus returns nil for a 2xx answer and an error otherwise.
func checkStatus(res *http.Response) error {
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return nil
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return &statusError{ErrRedirect, res.StatusCode}
	default:
		return &statusError{ErrStatus, res.StatusCode}
	}
}

// answerBuf holds an answer as it is read, with the reader that bounds
// it, so that reading an answer into a pooled one allocates nothing.
type answerBuf struct {
	bytes.Buffer
	limited io.LimitedReader
}

// readAnswer reads at most limit bytes of body into buf; a longer body is
// an error wrapping ErrAnswerTooLarge.
func readAnswer(buf *answerBuf, body io.Reader, limit int64) error {
	buf.limited = io.LimitedReader{R: body, N: limit + 1}
	n, err := buf.ReadFrom(&buf.limited)
	buf.limited.R = nil // not kept in the pool
	if err != nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	if n > limit {
		return fmt.Errorf("%w: over %d bytes", ErrAnswerTooLarge, limit)
	}
	return nil
}

// drainLimit bounds how much of an unwanted body is read so that its
// connection can be reused; a longer body closes the connection instead.
const drainLimit = 64 << 10

// drain reads and discards a bounded part of body so the connection can go
// back to the pool.
func drain(body io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
}

// buffers holds answer buffers between Before calls. Buffers that grew past
// maxPooledBuffer are let go rather than pinned.
var buffers = sync.Pool{New: func() any { return new(answerBuf) }}

const maxPooledBuffer = 64 << 10

func getBuffer() *answerBuf { return buffers.Get().(*answerBuf) }

func putBuffer(b *answerBuf) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	buffers.Put(b)
}

package openim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/imcallback/callback/format"
	"github.com/imcallback/callback/internal/jsonobj"
)

// Protocol is OpenIM's webhook format, also callback.OpenIM (see the
// package documentation). Its text form is "openim".
var Protocol = format.Register("openim", Format{})

// The answer's common fields and their values.
const (
	FieldActionCode = "actionCode"
	FieldErrCode    = "errCode"
	FieldErrMsg     = "errMsg"
	FieldErrDlt     = "errDlt"
	FieldNextCode   = "nextCode"

	// NextCodeStop, with actionCode 0, refuses the operation.
	NextCodeStop = 1
)

// HeaderOperationID is the header carrying OpenIM's operation ID: the
// event's ID when the Dispatcher sends it.
const HeaderOperationID = "operationID"

// envelope lists the common fields of every answer.
var envelope = [...]string{FieldActionCode, FieldErrCode, FieldErrMsg, FieldErrDlt, FieldNextCode}

// How a Drop is answered, which OpenIM cannot express: as a deny.
const (
	dropCode = 403
	dropMsg  = "dropped"
)

// renamed maps the answer fields of beforeMsgModify whose request field
// has another name.
var renamed = map[string]string{"atUserIDList": "atUserList", "senderFaceURL": "faceURL"}

// Format implements OpenIM's format; use Protocol to select it.
type Format struct{}

// Sender returns the sending side; a secret (Standard Webhooks "whsec_"
// secrets, as AppCommand's) adds webhook-timestamp and webhook-signature.
func (Format) Sender(secret string) (format.Sender, error) {
	w, err := format.NewWebhooks(secret)
	if err != nil {
		return nil, err
	}
	return &sender{w: w}, nil
}

// Receiver returns the receiving side; with a secret it verifies Standard
// Webhooks signatures within tolerance (0: 5 minutes).
func (Format) Receiver(secret string, tolerance time.Duration) (format.Receiver, error) {
	w, err := format.NewWebhooks(secret)
	if err != nil {
		return nil, err
	}
	if tolerance < 0 {
		return nil, errors.New("tolerance is negative")
	}
	return &receiver{w: w, tolerance: cmp.Or(tolerance, format.DefaultWebhookTolerance)}, nil
}

// Apply sets the answer's fields that are not null and not common
// (actionCode, errCode, errMsg, errDlt, nextCode) into body, OpenIM's
// "null = unchanged": beforeMsgModify's atUserIDList and senderFaceURL
// are written as the request's atUserList and faceURL, every other field
// (content, ex, userIDList, nickName, ...) under its own name.
func (Format) Apply(body []byte, data json.RawMessage) ([]byte, error) {
	if len(data) == 0 {
		return body, nil
	}
	ms, err := jsonobj.Members(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", format.ErrBadAnswer, err)
	}
	var set []jsonobj.Member
	for _, m := range ms {
		if jsonobj.Collides(m.Key, envelope[:]...) || bytes.Equal(m.Value, []byte("null")) {
			continue
		}
		if to, ok := renamed[m.Key]; ok {
			m.Key = to
		}
		set = append(set, m)
	}
	if len(set) == 0 {
		return body, nil
	}
	out, err := jsonobj.Set(body, set)
	if err != nil {
		return nil, fmt.Errorf("callback: the event body is not a JSON object: %w", err)
	}
	return out, nil
}

type sender struct{ w *format.Webhooks }

// OpenIM's request headers, shared by every request.
var contentType = []string{"application/json; charset=utf-8"}

func (*sender) Reserved() []string { return nil }

// AppendQuery adds nothing: OpenIM addresses by path.
func (*sender) AppendQuery(q []byte, _ format.Call) []byte { return q }

// Address appends "/" and the command, escaped, to the URL's path, with
// one "/" between them.
func (*sender) Address(u *url.URL, c format.Call) {
	raw := strings.TrimSuffix(u.EscapedPath(), "/") + "/" + url.PathEscape(c.Command)
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + c.Command
	u.RawPath = raw
}

// Sign sets OpenIM's Content-Type and operationID (the event's ID) and,
// keyed, the Standard Webhooks signature.
func (s *sender) Sign(req *http.Request, c format.Call, body []byte, now time.Time) {
	req.Header["Content-Type"] = contentType
	req.Header[http.CanonicalHeaderKey(HeaderOperationID)] = []string{c.EventID}
	s.w.Sign(req.Header, c.EventID, body, now)
}

// ProbeBody repeats the command as callbackCommand, as OpenIM's bodies do.
func (*sender) ProbeBody() []byte {
	return []byte(`{"callbackCommand":"` + format.CheckCommand + `","imcallback":"check"}`)
}

// answer is OpenIM's common answer, in OpenIM's order. Decode matches its
// fields as OpenIM's encoding/json does: exactly or, failing that, in any
// case.
type answer struct {
	ActionCode int    `json:"actionCode"`
	ErrCode    int    `json:"errCode"`
	ErrMsg     string `json:"errMsg"`
	ErrDlt     string `json:"errDlt"`
	NextCode   int    `json:"nextCode"`
}

// Decode reads OpenIM's answer: a deny when actionCode is 0 and nextCode
// is 1, an allow otherwise; Code is errCode and Msg errMsg. Data is the
// whole answer when it has a field beyond the common ones that is not null,
// or an errDlt that is not empty. An answer that is not one JSON object
// whose common fields have their types, or that repeats a key (even in
// another case), is ErrBadAnswer.
func (*sender) Decode(ans []byte) (format.Decision, error) {
	if err := format.CheckAnswer(ans); err != nil {
		return format.Decision{}, err
	}
	var a answer
	if err := json.Unmarshal(ans, &a); err != nil {
		return format.Decision{}, fmt.Errorf("%w: %v", format.ErrBadAnswer, err)
	}
	d := format.Decision{Code: a.ErrCode, Msg: a.ErrMsg}
	if a.ActionCode == 0 && a.NextCode == NextCodeStop {
		d.Action = format.Deny
	}
	if a.ErrDlt != "" || hasChanges(ans) {
		d.Data = bytes.Clone(ans) // ans is a pooled buffer
	}
	return d, nil
}

// hasChanges reports whether the answer has a field beyond the common
// ones that is not null.
func hasChanges(ans []byte) bool {
	ms, err := jsonobj.Members(ans)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if !jsonobj.Collides(m.Key, envelope[:]...) && !bytes.Equal(m.Value, []byte("null")) {
			return true
		}
	}
	return false
}

type receiver struct {
	w         *format.Webhooks
	tolerance time.Duration
}

func (r *receiver) Tolerance() time.Duration { return r.tolerance }

// Read verifies the Standard Webhooks signature when keyed and reads the
// command from the last segment of the path. OpenIM carries no app: the
// Call's AppID is 0. Its EventID is the webhook-id, or the operationID
// header when there is none (as OpenIM itself sends).
func (r *receiver) Read(req *http.Request, body []byte, now time.Time) (format.Call, error) {
	c := format.Call{EventID: format.WebhookID(req.Header)}
	if c.EventID == "" {
		c.EventID = req.Header.Get(HeaderOperationID)
	}
	// The escaped path, so that a command with an escaped "/" stays whole.
	path := req.URL.EscapedPath()
	if cmd, err := url.PathUnescape(path[strings.LastIndexByte(path, '/')+1:]); err == nil {
		c.Command = cmd
	}
	if err := r.w.Verify(req.Header, body, now, r.tolerance); err != nil {
		return c, err
	}
	c.Signed = r.w.Keyed()
	if c.Command == "" {
		return c, format.BadRequest("missing command: the last segment of the path")
	}
	return c, nil
}

// Encode writes OpenIM's answer: an allow as actionCode 0, nextCode 0,
// with a rewrite's fields merged in (Data must be a JSON object whose
// keys are not the common ones, even in another case); a deny as
// actionCode 0, nextCode 1 with errCode and errMsg (code 0, which OpenIM's
// clients read as success, cannot be written); a drop, which OpenIM
// cannot express, as a deny 403 "dropped".
func (*receiver) Encode(d format.Decision) ([]byte, error) {
	if d.Data != nil && !json.Valid(d.Data) {
		return nil, fmt.Errorf("%w: Data is not valid JSON", format.ErrDecision)
	}
	var e answer
	switch d.Action {
	case format.Allow:
		e.ErrMsg = d.Msg
	case format.Deny:
		if d.Code == 0 {
			return nil, fmt.Errorf("%w: Deny with code 0, which OpenIM reads as no error", format.ErrDecision)
		}
		e.ErrCode, e.ErrMsg, e.NextCode = d.Code, d.Msg, NextCodeStop
	case format.Drop:
		e.ErrCode, e.ErrMsg, e.NextCode = dropCode, dropMsg, NextCodeStop
	default:
		return nil, fmt.Errorf("%w: unknown Action %v", format.ErrDecision, d.Action)
	}
	out, err := json.Marshal(e)
	if err != nil || d.Data == nil || d.Action != format.Allow {
		return out, err
	}
	if err := jsonobj.Check(d.Data); err != nil {
		return nil, fmt.Errorf("%w: OpenIM's Data must be a JSON object without repeated keys", format.ErrDecision)
	}
	ms, err := jsonobj.Members(d.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: OpenIM's Data must be a JSON object", format.ErrDecision)
	}
	for _, m := range ms {
		if jsonobj.Collides(m.Key, envelope[:]...) {
			return nil, fmt.Errorf("%w: OpenIM's Data sets a common field (actionCode, errCode, errMsg, errDlt or nextCode)", format.ErrDecision)
		}
	}
	return jsonobj.Set(out, ms)
}

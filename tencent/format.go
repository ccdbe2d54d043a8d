package tencent

import (
	"bytes"
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback/format"
	"github.com/imcallback/callback/internal/jsonobj"
	"github.com/imcallback/callback/internal/wire"
)

// Protocol is Tencent Cloud IM's third-party callback format, also
// callback.Tencent: POST {URL}?SdkAppid=..&CallbackCommand=..&contenttype=json
// [&ClientIP=..][&OptPlatform=..], answered by {"ActionStatus",
// "ErrorCode", "ErrorInfo"}; ErrorCode 0 allows, 2 drops, any other code
// denies. With a secret (Tencent's token) it carries RequestTime and
// Sign. Its text form is "tencent".
var Protocol = format.Register("tencent", Format{})

// DefaultTolerance is how far a RequestTime may be from the receiver's
// clock by default: 1 minute, as Tencent's receivers allow.
const DefaultTolerance = time.Minute

// Format implements Tencent's format; use Protocol to select it.
type Format struct{}

// Sender returns the sending side, keyed with secret, Tencent's token
// (one token without spaces or control characters; empty: unsigned).
func (Format) Sender(secret string) (format.Sender, error) {
	if strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("the Tencent Secret (token) is one token, without spaces or control characters")
	}
	return &sender{token: secret}, nil
}

// Receiver returns the receiving side: secret is one or more tokens
// separated by spaces (a request is genuine if its Sign matches one of
// them), tolerance bounds RequestTime's distance from the receiver's clock
// (0: DefaultTolerance).
func (Format) Receiver(secret string, tolerance time.Duration) (format.Receiver, error) {
	if tolerance < 0 {
		return nil, errors.New("tolerance is negative")
	}
	return &receiver{tokens: strings.Fields(secret), tolerance: cmp.Or(tolerance, DefaultTolerance)}, nil
}

// Apply applies a Tencent answer's changes to body: MsgBody and
// CloudCustomData replace the body's, when present and not null (C2C and
// group messages); RefusedMembers_Account removes those accounts from the
// body's DestinationMembers and MemberList (Member_Account) lists
// (Group.CallbackBeforeInviteJoinGroup). The answer's other fields are
// not part of the event.
func (Format) Apply(body []byte, data json.RawMessage) ([]byte, error) {
	if len(data) == 0 {
		return body, nil
	}
	var a map[string]json.RawMessage
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %v", format.ErrBadAnswer, err)
	}
	var set []jsonobj.Member
	for _, k := range []string{"MsgBody", "CloudCustomData"} {
		if v := format.RawData(a[k]); v != nil {
			set = append(set, jsonobj.Member{Key: k, Value: v})
		}
	}
	if raw := format.RawData(a["RefusedMembers_Account"]); raw != nil {
		var refused []string
		if err := json.Unmarshal(raw, &refused); err != nil {
			return nil, fmt.Errorf("%w: RefusedMembers_Account is not a list of accounts", format.ErrBadAnswer)
		}
		ms, err := jsonobj.Members(body)
		if err != nil {
			return nil, fmt.Errorf("callback: the event body is not a JSON object: %w", err)
		}
		for _, m := range ms {
			if m.Key != "DestinationMembers" && m.Key != "MemberList" {
				continue
			}
			var list []map[string]json.RawMessage
			if json.Unmarshal(m.Value, &list) != nil {
				continue
			}
			list = slices.DeleteFunc(list, func(e map[string]json.RawMessage) bool {
				var acc string
				return json.Unmarshal(e["Member_Account"], &acc) == nil && slices.Contains(refused, acc)
			})
			v, err := json.Marshal(list)
			if err != nil {
				return nil, err
			}
			set = append(set, jsonobj.Member{Key: m.Key, Value: v})
		}
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

// ProbeBody is the body of callback.Dispatcher.Check's probe on Tencent:
// it repeats the command as "CallbackCommand", as Tencent's bodies do.
func (*sender) ProbeBody() []byte {
	return []byte(`{"CallbackCommand":"` + format.CheckCommand + `","imcallback":"check"}`)
}

type sender struct {
	token string // signs RequestTime; empty: unsigned
}

func (*sender) Reserved() []string { return wire.TencentReserved[:] }

func (*sender) AppendQuery(b []byte, c format.Call) []byte {
	b = append(b, "&"+wire.ParamSdkAppID+"="...)
	b = strconv.AppendInt(b, int64(c.AppID), 10)
	b = append(b, "&"+wire.ParamCallbackCommand+"="...)
	b = append(b, url.QueryEscape(c.Command)...)
	b = append(b, "&"+wire.ParamContentType+"="+wire.ContentTypeJSON...)
	if c.ClientIP != "" {
		b = append(b, "&"+wire.ParamClientIP+"="...)
		b = append(b, url.QueryEscape(c.ClientIP)...)
	}
	if c.Platform != "" {
		b = append(b, "&"+wire.ParamOptPlatform+"="...)
		b = append(b, url.QueryEscape(c.Platform)...)
	}
	return b
}

// Sign appends RequestTime (unix seconds) and Sign, the lowercase hex
// SHA-256 of token + RequestTime, to the query when keyed. Tencent signs
// neither the body nor the other parameters.
func (s *sender) Sign(req *http.Request, _ format.Call, _ []byte, now time.Time) {
	if s.token == "" {
		return
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	q := make([]byte, 0, len(req.URL.RawQuery)+len(wire.ParamRequestTime)+len(ts)+len(wire.ParamSign)+wire.TencentSignLen+4)
	q = append(q, req.URL.RawQuery...)
	q = append(q, "&"+wire.ParamRequestTime+"="...)
	q = append(q, ts...)
	q = append(q, "&"+wire.ParamSign+"="...)
	q = wire.AppendTencentSign(q, s.token, ts)
	req.URL.RawQuery = string(q)
}

// Decode maps ErrorCode: 0 allows, 2 drops, anything else denies (1, or
// 120001..130000 with a text for the client). Code is ErrorCode and Msg is
// ErrorInfo. When the answer has keys beyond the envelope, Data is the
// whole answer. ActionStatus is not read: ErrorCode decides. Keys are
// matched exactly, as Tencent does; two top-level keys that are equal or
// differ only in case ({"ErrorCode":1,"errorcode":0}), or an envelope key
// in another case, are ErrBadAnswer.
func (*sender) Decode(answer []byte) (format.Decision, error) {
	if err := format.CheckAnswer(answer, wire.TencentEnvelope[:]...); err != nil {
		return format.Decision{}, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(answer, &fields); err != nil {
		return format.Decision{}, fmt.Errorf("%w: %v", format.ErrBadAnswer, err)
	}
	raw, ok := fields[wire.FieldErrorCode]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return format.Decision{}, fmt.Errorf("%w: no \"ErrorCode\"", format.ErrBadAnswer)
	}
	var d format.Decision
	if err := json.Unmarshal(raw, &d.Code); err != nil {
		return format.Decision{}, fmt.Errorf("%w: \"ErrorCode\" is not an integer", format.ErrBadAnswer)
	}
	if raw, ok := fields[wire.FieldErrorInfo]; ok {
		if err := json.Unmarshal(raw, &d.Msg); err != nil {
			return format.Decision{}, fmt.Errorf("%w: \"ErrorInfo\" is not a string", format.ErrBadAnswer)
		}
	}
	switch d.Code {
	case wire.TencentAllow:
		d.Action = format.Allow
	case wire.TencentDrop:
		d.Action = format.Drop
	default:
		d.Action = format.Deny
	}
	extra := len(fields)
	for _, k := range wire.TencentEnvelope {
		if _, ok := fields[k]; ok {
			extra--
		}
	}
	if extra > 0 {
		d.Data = bytes.Clone(answer) // answer is a pooled buffer
	}
	return d, nil
}

type receiver struct {
	tokens    []string
	tolerance time.Duration
}

func (r *receiver) Tolerance() time.Duration { return r.tolerance }

// Read checks RequestTime and Sign when keyed, then reads SdkAppid,
// CallbackCommand, ClientIP and OptPlatform. Tencent's Sign covers no
// event ID nor body: Call.Signed is false.
func (r *receiver) Read(req *http.Request, _ []byte, now time.Time) (format.Call, error) {
	q := req.URL.Query()
	c := format.Call{Command: q.Get(wire.ParamCallbackCommand), EventID: format.WebhookID(req.Header),
		ClientIP: q.Get(wire.ParamClientIP), Platform: q.Get(wire.ParamOptPlatform)}
	c.AppID, _ = strconv.Atoi(q.Get(wire.ParamSdkAppID))
	if err := r.verify(q, now); err != nil {
		return c, err
	}
	if c.Command == "" {
		return c, format.BadRequest("missing %s", wire.ParamCallbackCommand)
	}
	app, err := format.ParseAppID(wire.ParamSdkAppID, q.Get(wire.ParamSdkAppID))
	if err != nil {
		return c, err
	}
	c.AppID = app
	return c, nil
}

func (r *receiver) verify(q url.Values, now time.Time) error {
	if len(r.tokens) == 0 {
		return nil
	}
	ts, sign := q.Get(wire.ParamRequestTime), q.Get(wire.ParamSign)
	if ts == "" || sign == "" {
		return format.Unverified("missing %s or %s", wire.ParamRequestTime, wire.ParamSign)
	}
	if err := format.CheckTime(wire.ParamRequestTime, ts, now, r.tolerance); err != nil {
		return err
	}
	want := make([]byte, 0, wire.TencentSignLen)
	for _, token := range r.tokens {
		want = wire.AppendTencentSign(want[:0], token, ts)
		if len(sign) == len(want) && subtle.ConstantTimeCompare([]byte(sign), want) == 1 {
			return nil
		}
	}
	return format.Unverified("Sign does not match")
}

// Encode writes {"ActionStatus": "OK", "ErrorCode", "ErrorInfo"} and a
// rewrite's fields: Allow is ErrorCode 0, Drop 2, and Deny its code, 0
// written as 1 (Tencent's plain deny); a Deny with code 2, which Tencent
// reads as a drop, cannot be written. A rewrite's Data must be a JSON
// object whose keys are not ActionStatus, ErrorCode or ErrorInfo and do
// not repeat, even in another case.
func (*receiver) Encode(d format.Decision) ([]byte, error) {
	if d.Data != nil && !json.Valid(d.Data) {
		return nil, fmt.Errorf("%w: Data is not valid JSON", format.ErrDecision)
	}
	code := d.Code
	switch d.Action {
	case format.Allow:
		code = wire.TencentAllow
	case format.Deny:
		switch code {
		case wire.TencentAllow:
			code = wire.TencentDeny
		case wire.TencentDrop:
			return nil, fmt.Errorf("%w: Deny with code %d, which Tencent reads as drop", format.ErrDecision, wire.TencentDrop)
		}
	case format.Drop:
		code = wire.TencentDrop
	default:
		return nil, fmt.Errorf("%w: unknown Action %v", format.ErrDecision, d.Action)
	}
	fields := map[string]any{}
	if d.Data != nil {
		var extra map[string]json.RawMessage
		if err := jsonobj.Check(d.Data); err != nil || json.Unmarshal(d.Data, &extra) != nil {
			return nil, fmt.Errorf("%w: Tencent's Data must be a JSON object without repeated keys", format.ErrDecision)
		}
		for k, v := range extra {
			if jsonobj.Collides(k, wire.TencentEnvelope[:]...) {
				return nil, fmt.Errorf("%w: Tencent's Data sets an envelope key (ActionStatus, ErrorCode or ErrorInfo)", format.ErrDecision)
			}
			fields[k] = v
		}
	}
	fields[wire.FieldActionStatus] = wire.ActionStatusOK
	fields[wire.FieldErrorCode] = code
	fields[wire.FieldErrorInfo] = d.Msg
	return json.Marshal(fields)
}

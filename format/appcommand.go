package format

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/imcallback/callback/internal/jsonobj"
	"github.com/imcallback/callback/internal/wire"
)

// AppCommand's allow, and how it answers a Drop, which it cannot express.
const (
	appCommandOK      = wire.SeedOK
	appCommandOKMsg   = wire.SeedOKMsg
	appCommandDropped = 403
	appCommandDropMsg = "dropped"
)

// ErrDecision is wrapped by a Receiver's Encode error for a Decision its
// format cannot express.
var ErrDecision = errors.New("receiver: decision cannot be answered")

// appCommand is the AppCommand format: POST {URL}?appId=..&command=..,
// answered by {"code": int, "msg": string, "data": any}; code 200 allows.
// Keyed, it signs each attempt the Standard Webhooks way.
type appCommand struct{}

func (appCommand) Sender(secret string) (Sender, error) {
	w, err := NewWebhooks(secret)
	if err != nil {
		return nil, err
	}
	return &appCommandSender{w: w}, nil
}

func (appCommand) Receiver(secret string, tolerance time.Duration) (Receiver, error) {
	w, err := NewWebhooks(secret)
	if err != nil {
		return nil, err
	}
	if tolerance < 0 {
		return nil, errors.New("tolerance is negative")
	}
	return &appCommandReceiver{w: w, tolerance: cmp.Or(tolerance, DefaultWebhookTolerance)}, nil
}

// Apply returns data: AppCommand's "data" is the rewritten payload,
// whole. An App backend that answers part of a payload in it (the seed
// design's member list for group.member.add.before) is read from
// Decision.Data instead.
func (appCommand) Apply(body []byte, data json.RawMessage) ([]byte, error) {
	if len(data) == 0 {
		return body, nil
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%w: data is not JSON", ErrBadAnswer)
	}
	return data, nil
}

type appCommandSender struct{ w *Webhooks }

func (*appCommandSender) Reserved() []string { return []string{wire.ParamAppID, wire.ParamCommand} }

func (*appCommandSender) AppendQuery(q []byte, c Call) []byte {
	q = append(q, "&"+wire.ParamAppID+"="...)
	q = strconv.AppendInt(q, int64(c.AppID), 10)
	q = append(q, "&"+wire.ParamCommand+"="...)
	return append(q, url.QueryEscape(c.Command)...)
}

// Sign sets webhook-timestamp and webhook-signature when keyed.
func (s *appCommandSender) Sign(req *http.Request, c Call, body []byte, now time.Time) {
	if s.w.Keyed() {
		s.w.Sign(req.Header, c.EventID, body, now)
	}
}

// appCommandAnswer is AppCommand's answer. Code is a pointer so that a
// missing code is told apart from 0: the seed read it as 0 and so denied.
type appCommandAnswer struct {
	Code *int            `json:"code"`
	Msg  string          `json:"msg"`
	Data json.RawMessage `json:"data"`
}

// Decode reads {"code", "msg", "data"}. Keys are matched exactly, as the
// seed's Java JSON library does: an answer with two top-level keys that are
// equal or differ only in case ({"code":403,"Code":200}), or with "Code"
// for "code", is ErrBadAnswer, since two readers could take it to mean
// different things. A missing code is ErrBadAnswer too.
func (*appCommandSender) Decode(answer []byte) (Decision, error) {
	if err := CheckAnswer(answer, wire.SeedFields[:]...); err != nil {
		return Decision{}, err
	}
	var a appCommandAnswer
	if err := json.Unmarshal(answer, &a); err != nil {
		return Decision{}, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if a.Code == nil {
		return Decision{}, fmt.Errorf("%w: no \"code\"", ErrBadAnswer)
	}
	d := Decision{Code: *a.Code, Msg: a.Msg, Data: RawData(a.Data)}
	if d.Code != appCommandOK {
		d.Action = Deny
	}
	return d, nil
}

type appCommandReceiver struct {
	w         *Webhooks
	tolerance time.Duration
}

func (r *appCommandReceiver) Tolerance() time.Duration { return r.tolerance }

func (r *appCommandReceiver) Read(req *http.Request, body []byte, now time.Time) (Call, error) {
	q := req.URL.Query()
	c := Call{Command: q.Get(wire.ParamCommand), EventID: WebhookID(req.Header)}
	c.AppID, _ = strconv.Atoi(q.Get(wire.ParamAppID))
	if err := r.w.Verify(req.Header, body, now, r.tolerance); err != nil {
		return c, err
	}
	c.Signed = r.w.Keyed()
	if c.Command == "" {
		return c, BadRequest("missing %s", wire.ParamCommand)
	}
	app, err := ParseAppID(wire.ParamAppID, q.Get(wire.ParamAppID))
	if err != nil {
		return c, err
	}
	c.AppID = app
	return c, nil
}

type appCommandEncoded struct {
	Code int             `json:"code"`
	Msg  string          `json:"msg"`
	Data json.RawMessage `json:"data,omitempty"`
}

// Encode writes {"code", "msg", "data"}: an allow as 200 (msg "success"
// unless given) with Data as "data"; a deny with its code, which must not
// be 200; a drop, which AppCommand cannot express, as a deny 403
// "dropped".
func (*appCommandReceiver) Encode(d Decision) ([]byte, error) {
	if d.Data != nil && !json.Valid(d.Data) {
		return nil, fmt.Errorf("%w: Data is not valid JSON", ErrDecision)
	}
	a := appCommandEncoded{Code: d.Code, Msg: d.Msg}
	switch d.Action {
	case Allow:
		a.Code, a.Data = appCommandOK, d.Data
		if a.Msg == "" {
			a.Msg = appCommandOKMsg
		}
	case Deny:
		if d.Code == appCommandOK {
			return nil, fmt.Errorf("%w: Deny with code %d, which AppCommand reads as allow", ErrDecision, appCommandOK)
		}
	case Drop:
		a.Code, a.Msg = appCommandDropped, appCommandDropMsg
	default:
		return nil, fmt.Errorf("%w: unknown Action %v", ErrDecision, d.Action)
	}
	return json.Marshal(a)
}

// CheckAnswer returns an error wrapping ErrBadAnswer for an answer that
// is not one JSON object in UTF-8, that has two top-level keys equal or
// differing only in case, or that writes one of keys in another case.
func CheckAnswer(answer []byte, keys ...string) error {
	if err := jsonobj.Check(answer, keys...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	return nil
}

// RawData returns data, or nil when it is absent or JSON null.
func RawData(data json.RawMessage) json.RawMessage {
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return nil
	}
	return data
}

// ParseAppID reads an app ID from the value v of the parameter name: a
// 400 *RequestError when it is missing or not an integer.
func ParseAppID(name, v string) (int, error) {
	if v == "" {
		return 0, BadRequest("missing %s", name)
	}
	id, err := strconv.Atoi(v)
	if err != nil {
		return 0, BadRequest("%s is not an integer", name)
	}
	return id, nil
}

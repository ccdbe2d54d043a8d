package main

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

	"github.com/imcallback/callback/format"
)

// Hooks is a small webhook format of an imagined IM server, implemented
// with package format's public API only, outside package callback:
//
//	POST {URL}                       (the URL's own query kept)
//	X-Hook-Event: <command>
//	X-Hook-App: <app ID>
//	<the event's JSON body>
//
// answered by {"ok": true} to allow, {"ok": true, "patch": {...}} to allow
// with top-level fields of the body replaced, or {"ok": false, "code":
// 4001, "reason": "..."} to refuse. With a secret it signs the Standard
// Webhooks way, through format.Webhooks.
var Hooks = format.Register("hooks", hooksFormat{})

// Header names of the format.
const (
	headerEvent = "X-Hook-Event"
	headerApp   = "X-Hook-App"
)

type hooksFormat struct{}

// answer is the format's answer.
type answer struct {
	OK     *bool           `json:"ok"`
	Code   int             `json:"code,omitempty"`
	Reason string          `json:"reason,omitempty"`
	Patch  json.RawMessage `json:"patch,omitempty"`
}

func (hooksFormat) Sender(secret string) (format.Sender, error) {
	w, err := format.NewWebhooks(secret)
	if err != nil {
		return nil, err
	}
	return &hooksSender{w: w}, nil
}

func (hooksFormat) Receiver(secret string, tolerance time.Duration) (format.Receiver, error) {
	w, err := format.NewWebhooks(secret)
	if err != nil {
		return nil, err
	}
	if tolerance < 0 {
		return nil, errors.New("tolerance is negative")
	}
	return &hooksReceiver{w: w, tolerance: cmp.Or(tolerance, format.DefaultWebhookTolerance)}, nil
}

// Apply replaces the body's top-level fields with the patch's.
func (hooksFormat) Apply(body []byte, data json.RawMessage) ([]byte, error) {
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %v", format.ErrBadAnswer, err)
	}
	var patch, doc map[string]json.RawMessage
	if err := json.Unmarshal(a.Patch, &patch); err != nil {
		return nil, fmt.Errorf("%w: patch is not an object", format.ErrBadAnswer)
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("hooks: the body is not a JSON object")
	}
	for k, v := range patch {
		doc[k] = v
	}
	return json.Marshal(doc)
}

type hooksSender struct{ w *format.Webhooks }

// Reserved: the format adds no query parameters.
func (*hooksSender) Reserved() []string { return nil }

func (*hooksSender) AppendQuery(q []byte, _ format.Call) []byte { return q }

// Sign sets the format's headers on every attempt and signs when keyed.
func (s *hooksSender) Sign(req *http.Request, c format.Call, body []byte, now time.Time) {
	req.Header.Set(headerEvent, url.PathEscape(c.Command))
	req.Header.Set(headerApp, strconv.Itoa(c.AppID))
	s.w.Sign(req.Header, c.EventID, body, now)
}

func (*hooksSender) Decode(ans []byte) (format.Decision, error) {
	if err := format.CheckAnswer(ans); err != nil {
		return format.Decision{}, err
	}
	var a answer
	if err := json.Unmarshal(ans, &a); err != nil || a.OK == nil {
		return format.Decision{}, fmt.Errorf("%w: no \"ok\"", format.ErrBadAnswer)
	}
	if !*a.OK {
		return format.Decision{Action: format.Deny, Code: a.Code, Msg: a.Reason}, nil
	}
	d := format.Decision{Action: format.Allow}
	if format.RawData(a.Patch) != nil {
		d.Data = bytes.Clone(ans) // ans is lent: keep a copy
	}
	return d, nil
}

type hooksReceiver struct {
	w         *format.Webhooks
	tolerance time.Duration
}

func (r *hooksReceiver) Tolerance() time.Duration { return r.tolerance }

func (r *hooksReceiver) Read(req *http.Request, body []byte, now time.Time) (format.Call, error) {
	c := format.Call{EventID: format.WebhookID(req.Header)}
	c.Command, _ = url.PathUnescape(req.Header.Get(headerEvent))
	c.AppID, _ = strconv.Atoi(req.Header.Get(headerApp))
	if err := r.w.Verify(req.Header, body, now, r.tolerance); err != nil {
		return c, err
	}
	c.Signed = r.w.Keyed()
	if c.Command == "" {
		return c, format.BadRequest("missing %s", headerEvent)
	}
	app, err := format.ParseAppID(headerApp, req.Header.Get(headerApp))
	if err != nil {
		return c, err
	}
	c.AppID = app
	return c, nil
}

// Encode writes an allow (with Data, which must be a JSON object, as the
// patch), a deny with its code and reason, and a drop, which the format
// cannot express, as a deny 4030 "dropped".
func (*hooksReceiver) Encode(d format.Decision) ([]byte, error) {
	ok := d.Action == format.Allow
	a := answer{OK: &ok}
	switch d.Action {
	case format.Allow:
		if d.Data != nil {
			var patch map[string]json.RawMessage
			if err := json.Unmarshal(d.Data, &patch); err != nil {
				return nil, fmt.Errorf("%w: the patch must be a JSON object", format.ErrDecision)
			}
			a.Patch = d.Data
		}
	case format.Deny:
		a.Code, a.Reason = d.Code, d.Msg
	case format.Drop:
		a.Code, a.Reason = 4030, "dropped"
	default:
		return nil, fmt.Errorf("%w: unknown Action %v", format.ErrDecision, d.Action)
	}
	return json.Marshal(a)
}

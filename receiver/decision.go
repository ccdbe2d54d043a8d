package receiver

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/jsonobj"
	"github.com/imcallback/callback/internal/wire"
)

// How a Drop is answered on AppCommand, which cannot express one.
const (
	seedDropCode = 403
	seedDropMsg  = "dropped"
)

// A Decision is a handler's answer to a callback. The zero Decision allows.
// Build one with Allow, Rewrite, Deny or Drop.
type Decision struct {
	// Action is what the IM server should do.
	Action callback.Action
	// Code and Msg are the App's code and message; for Deny they may be
	// passed on to the IM client.
	Code int
	Msg  string
	// Data is a rewritten payload, for Allow; nil keeps the original.
	Data json.RawMessage
}

// Allow lets the event proceed unchanged.
func Allow() Decision { return Decision{Action: callback.Allow} }

// Rewrite lets the event proceed with data in place of its payload. For
// AppCommand, data is sent as the answer's "data" (any JSON). For Tencent, data
// must be a JSON object whose fields are added to the answer, for example
// {"MsgBody": [...]} or {"RefusedMembers_Account": ["eve"]}, whose keys
// are not ActionStatus, ErrorCode or ErrorInfo and do not repeat, even in
// another case: the Dispatcher refuses such an answer as ambiguous.
func Rewrite(data json.RawMessage) Decision {
	return Decision{Action: callback.Allow, Data: data}
}

// Deny refuses the event; code and msg may be passed on to the IM client.
// For AppCommand, code must not be 200 (which allows). For Tencent, code 0 is
// written as 1, Tencent's plain deny, and code 2 (which drops) is not
// allowed; Tencent passes codes 120001 to 130000 and msg on to the client.
// A Decision that cannot be written is answered 500 and logged.
func Deny(code int, msg string) Decision {
	return Decision{Action: callback.Deny, Code: code, Msg: msg}
}

// Drop tells the sender the event succeeded while nobody receives it. For
// Tencent it is ErrorCode 2. The AppCommand protocol cannot express a drop, so
// for AppCommand it is answered as a deny, code 403 and msg "dropped": the event
// is still not delivered, but the sender is told.
func Drop() Decision { return Decision{Action: callback.Drop} }

var errDecision = errors.New("receiver: decision cannot be answered")

// encode writes d as protocol p's answer.
func (d Decision) encode(p callback.Protocol) ([]byte, error) {
	if d.Data != nil && !json.Valid(d.Data) {
		return nil, fmt.Errorf("%w: Data is not valid JSON", errDecision)
	}
	switch p {
	case callback.Tencent:
		return d.encodeTencent()
	default:
		return d.encodeSeed()
	}
}

type seedAnswer struct {
	Code int             `json:"code"`
	Msg  string          `json:"msg"`
	Data json.RawMessage `json:"data,omitempty"`
}

func (d Decision) encodeSeed() ([]byte, error) {
	a := seedAnswer{Code: d.Code, Msg: d.Msg}
	switch d.Action {
	case callback.Allow:
		a.Code, a.Data = wire.SeedOK, d.Data
		if a.Msg == "" {
			a.Msg = wire.SeedOKMsg
		}
	case callback.Deny:
		if d.Code == wire.SeedOK {
			return nil, fmt.Errorf("%w: Deny with code %d, which AppCommand reads as allow", errDecision, wire.SeedOK)
		}
	case callback.Drop:
		a.Code, a.Msg = seedDropCode, seedDropMsg
	default:
		return nil, fmt.Errorf("%w: unknown Action %v", errDecision, d.Action)
	}
	return json.Marshal(a)
}

func (d Decision) encodeTencent() ([]byte, error) {
	code := d.Code
	switch d.Action {
	case callback.Allow:
		code = wire.TencentAllow
	case callback.Deny:
		switch code {
		case wire.TencentAllow:
			code = wire.TencentDeny
		case wire.TencentDrop:
			return nil, fmt.Errorf("%w: Deny with code %d, which Tencent reads as drop", errDecision, wire.TencentDrop)
		}
	case callback.Drop:
		code = wire.TencentDrop
	default:
		return nil, fmt.Errorf("%w: unknown Action %v", errDecision, d.Action)
	}
	fields := map[string]any{}
	if d.Data != nil {
		var extra map[string]json.RawMessage
		if err := jsonobj.Check(d.Data); err != nil || json.Unmarshal(d.Data, &extra) != nil {
			return nil, fmt.Errorf("%w: Tencent's Data must be a JSON object without repeated keys", errDecision)
		}
		for k, v := range extra {
			if jsonobj.Collides(k, wire.TencentEnvelope[:]...) {
				return nil, fmt.Errorf("%w: Tencent's Data sets an envelope key (ActionStatus, ErrorCode or ErrorInfo)", errDecision)
			}
			fields[k] = v
		}
	}
	fields[wire.FieldActionStatus] = wire.ActionStatusOK
	fields[wire.FieldErrorCode] = code
	fields[wire.FieldErrorInfo] = d.Msg
	return json.Marshal(fields)
}

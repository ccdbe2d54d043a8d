package callback

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback/internal/jsonobj"

	"github.com/imcallback/callback/internal/wire"
)

// wireFormat is one callback wire format: how a call is addressed and signed and
// how the App backend's answer is read. Before and After know nothing else
// of it, so a new format is one file: a type implementing these methods, a
// Protocol constant and a case in newWire.
type wireFormat interface {
	// reserved lists the query parameters the format sets itself; a
	// configured URL's own values for them are dropped.
	reserved() []string
	// sendsDevice reports whether appendQuery reads c.device, so that After
	// captures the caller's client only for formats that send it.
	sendsDevice() bool
	// appendQuery appends the call's query parameters to b: those that are
	// the same on every attempt of the call.
	appendQuery(b []byte, c *call) []byte
	// signs reports whether sign does anything, so that attempts need not
	// be copied for a format or configuration that signs nothing.
	signs() bool
	// sign authenticates one attempt just before it is sent, at time now:
	// it may set headers and append to req.URL.RawQuery, and it must not
	// keep req. body is exactly the body sent; id is the webhook-id.
	sign(req *http.Request, id string, body []byte, now time.Time)
	// decode reads a 2xx answer. It returns an error wrapping ErrBadAnswer
	// when the answer is not the format's.
	decode(answer []byte) (Response, error)
}

// call is what addresses one callback.
type call struct {
	appID   int
	command string
	device  device
}

// Protocol selects a callback wire format. The zero value is AppCommand.
type Protocol int

const (
	// AppCommand is the format of the Java IM design imcallback started
	// from, named for its query: POST {URL}?appId=..&command=.., answered
	// by {"code", "msg", "data"}; code 200 allows. With a Config.Secret it
	// carries Standard Webhooks signatures. It is the default.
	AppCommand Protocol = iota
	// Tencent is Tencent Cloud IM's third-party callback format:
	// POST {URL}?SdkAppid=..&CallbackCommand=..&contenttype=json, answered
	// by {"ActionStatus", "ErrorCode", "ErrorInfo"}; ErrorCode 0 allows.
	// With a Config.Secret (Tencent's token) it carries RequestTime and Sign.
	Tencent
)

// Seed is AppCommand's first name, from the design notes.
//
// Deprecated: use AppCommand; UnmarshalText still reads "seed".
const Seed = AppCommand

// String returns "appcommand" or "tencent".
func (p Protocol) String() string {
	switch p {
	case AppCommand:
		return "appcommand"
	case Tencent:
		return "tencent"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText returns p.String(), for flags and configuration files.
func (p Protocol) MarshalText() ([]byte, error) {
	if p != AppCommand && p != Tencent {
		return nil, fmt.Errorf("callback: unknown protocol %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText sets p from "appcommand" or "tencent" (any case), so a
// Protocol can be read by flag.TextVar or from JSON; "seed", AppCommand's
// first name, is read as AppCommand.
func (p *Protocol) UnmarshalText(text []byte) error {
	switch strings.ToLower(string(text)) {
	case "appcommand", "seed":
		*p = AppCommand
	case "tencent":
		*p = Tencent
	default:
		return fmt.Errorf("callback: unknown protocol %q (want appcommand or tencent)", text)
	}
	return nil
}

// newWire returns the wire format p, keyed with secret. It returns an
// error wrapping ErrInvalidConfig for an unknown protocol or a secret that
// does not parse; the secret itself is never in the error.
func newWire(p Protocol, secret string) (wireFormat, error) {
	switch p {
	case AppCommand:
		return newSeedWire(secret)
	case Tencent:
		return newTencentWire(secret)
	}
	return nil, fmt.Errorf("%w: unknown Protocol %d", ErrInvalidConfig, int(p))
}

// Codes and messages the Dispatcher itself puts in a Response, documented
// on Response: the protocols' own allow (AppCommand: 200 "success";
// Tencent: 0 ""), and the deny of a failed FailClosed command (503
// "callback failed").
const (
	codeOK         = wire.SeedOK
	msgOK          = wire.SeedOKMsg
	tencentCodeOK  = wire.TencentAllow
	tencentMsgOK   = ""
	codeFailClosed = 503
	msgFailClosed  = "callback failed"
)

// allowed returns the Response with which the Dispatcher allows an event
// by itself on protocol p, with err: the protocol's own allow code and
// message, so that the IM server reads it as it reads the App's allow.
func (p Protocol) allowed(err error) Response {
	if p == Tencent {
		return Response{Code: tencentCodeOK, Msg: tencentMsgOK, Action: Allow, Err: err}
	}
	return Response{Code: codeOK, Msg: msgOK, Action: Allow, Err: err}
}

// seedWire is the seed design's format: POST {URL}?appId=..&command=..,
// answered by {"code": int, "msg": string, "data": any}; code 200 allows.
// With keys it signs each attempt the Standard Webhooks way (signature.go).
type seedWire struct {
	keys []*signingKey // one signature each; none: unsigned
}

func (*seedWire) reserved() []string { return []string{wire.ParamAppID, wire.ParamCommand} }

func (*seedWire) sendsDevice() bool { return false }

func (*seedWire) appendQuery(b []byte, c *call) []byte {
	return appendSeedQuery(b, c.appID, c.command)
}

// seedAnswer is the AppCommand protocol's answer. Code is a pointer so that a
// missing code is told apart from 0: the seed read it as 0 and so denied.
type seedAnswer struct {
	Code *int            `json:"code"`
	Msg  string          `json:"msg"`
	Data json.RawMessage `json:"data"`
}

// decode reads {"code", "msg", "data"}. Keys are matched exactly, as the
// seed's Java JSON library does: an answer with two top-level keys that are
// equal or differ only in case ({"code":403,"Code":200}), or with "Code"
// for "code", is ErrBadAnswer, since two readers could take it to mean
// different things. A missing code is ErrBadAnswer too.
func (*seedWire) decode(answer []byte) (Response, error) {
	if err := checkAnswer(answer, wire.SeedFields[:]...); err != nil {
		return Response{}, err
	}
	var a seedAnswer
	if err := json.Unmarshal(answer, &a); err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if a.Code == nil {
		return Response{}, fmt.Errorf("%w: no \"code\"", ErrBadAnswer)
	}
	r := Response{Code: *a.Code, Msg: a.Msg, Data: rawData(a.Data)}
	if r.Code != codeOK {
		r.Action = Deny
	}
	return r, nil
}

// checkAnswer returns an error wrapping ErrBadAnswer for an answer that is
// not one JSON object in UTF-8, that has two top-level keys equal or
// differing only in case, or that writes one of keys in another case.
func checkAnswer(answer []byte, keys ...string) error {
	if err := jsonobj.Check(answer, keys...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	return nil
}

// rawData returns data, or nil when it is absent or JSON null.
func rawData(data json.RawMessage) json.RawMessage {
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return nil
	}
	return data
}

package callback

import (
	"fmt"

	"github.com/imcallback/callback/format"
	"github.com/imcallback/callback/openim"
	"github.com/imcallback/callback/tencent"
)

// Protocol selects a callback wire format, per Dispatcher (Config.Protocol)
// or per app (Endpoint.Protocol). The zero value is AppCommand. It is
// package format's Protocol: a comparable value whose text form
// ("appcommand", "tencent", "openim", or the name a format of your own was
// registered under with format.Register) flags, configuration files and
// sqlapps' protocol column read and write.
type Protocol = format.Protocol

var (
	// AppCommand is the format of the Java IM design imcallback started
	// from, named for its query: POST {URL}?appId=..&command=.., answered
	// by {"code", "msg", "data"}; code 200 allows. With a Config.Secret it
	// carries Standard Webhooks signatures. It is the default, the zero
	// Protocol. Its commands are in package command.
	AppCommand = format.AppCommand
	// Tencent is Tencent Cloud IM's third-party callback format:
	// POST {URL}?SdkAppid=..&CallbackCommand=..&contenttype=json, answered
	// by {"ActionStatus", "ErrorCode", "ErrorInfo"}; ErrorCode 0 allows.
	// With a Config.Secret (Tencent's token) it carries RequestTime and
	// Sign. Its commands are in package tencent.
	Tencent = tencent.Protocol
	// OpenIM is OpenIM's webhook format: POST {URL}/{command}, answered by
	// {"actionCode", "errCode", "errMsg", "errDlt", "nextCode"}; only
	// actionCode 0 with nextCode 1 denies. OpenIM signs nothing; with a
	// Config.Secret it carries Standard Webhooks signatures, as AppCommand
	// does. Its commands, and how it differs from OpenIM's own failure
	// handling, are in package openim.
	OpenIM = openim.Protocol
)

// Seed is AppCommand's first name, from the design notes.
//
// Deprecated: use AppCommand; UnmarshalText still reads "seed".
var Seed = AppCommand

// Action is what the IM server should do with the event: Allow, Deny or
// Drop. It is package format's Action.
type Action = format.Action

const (
	// Allow lets the event proceed, with the App backend's changes applied
	// (Response.Apply) when it made some.
	Allow = format.Allow
	// Deny refuses the event; Response.Code and Msg are the App backend's
	// and may be passed to the client.
	Deny = format.Deny
	// Drop tells the sender the event succeeded while nobody receives it.
	Drop = format.Drop
)

// BeforeIDSuffix is appended to the ID given to a Before call with
// WithEventID to make its webhook-id, so that one ID per message serves
// its Before and its After: the After sends the ID as given, the Before
// ID + "/before", two events to the App backend, which matches them by
// trimming the suffix (see WithEventID).
const BeforeIDSuffix = format.BeforeIDSuffix

// The deny of a failed FailClosed command, documented on Response.
const (
	codeFailClosed = 503
	msgFailClosed  = "callback failed"
)

// newSender returns protocol p's sending side, keyed with secret. Its
// error wraps ErrInvalidConfig; the secret itself is never in it.
func newSender(p Protocol, secret string) (format.Sender, error) {
	s, err := p.Format().Sender(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return s, nil
}

// allowed returns the Response with which the Dispatcher allows an event
// by itself on protocol p, with err: the protocol's own allow code and
// message, so that the IM server reads it as it reads the App's allow.
func allowed(p Protocol, err error) Response {
	a := p.Allowed()
	return Response{Code: a.Code, Msg: a.Msg, Action: Allow, Err: err, Protocol: p}
}

// decisionResponse returns the Response of the App's decision on p.
func decisionResponse(p Protocol, d format.Decision) Response {
	return Response{Code: d.Code, Msg: d.Msg, Data: d.Data, Action: d.Action, Protocol: p}
}

package receiver

import (
	"encoding/json"

	"github.com/imcallback/callback/format"
)

// A Decision is a handler's answer to a callback, which the Handler writes
// in its protocol's answer format (format.Receiver.Encode). The zero
// Decision allows. Build one with Allow, Rewrite, Deny or Drop. It is
// package format's Decision: Action (callback.Allow, Deny or Drop), Code,
// Msg and Data.
type Decision = format.Decision

// Allow lets the event proceed unchanged.
func Allow() Decision { return Decision{Action: format.Allow} }

// Rewrite lets the event proceed with data as the App's changes, which the
// IM server applies with callback.Response.Apply. For AppCommand, data is
// sent as the answer's "data" (any JSON), the new payload. For Tencent and
// OpenIM, data must be a JSON object whose fields are added to the
// answer, for example {"MsgBody": [...]} or {"RefusedMembers_Account":
// ["eve"]} on Tencent, {"content": "..."} or {"userIDList": [...]} on
// OpenIM, whose keys are not the answer's own (ActionStatus, ErrorCode,
// ErrorInfo; actionCode, errCode, errMsg, errDlt, nextCode) and do not
// repeat, even in another case: the Dispatcher refuses such an answer as
// ambiguous.
func Rewrite(data json.RawMessage) Decision {
	return Decision{Action: format.Allow, Data: data}
}

// Deny refuses the event; code and msg may be passed on to the IM client.
// For AppCommand, code must not be 200 (which allows). For Tencent, code 0 is
// written as 1, Tencent's plain deny, and code 2 (which drops) is not
// allowed; Tencent passes codes 120001 to 130000 and msg on to the client.
// For OpenIM, code must not be 0; it is written as errCode, with
// actionCode 0 and nextCode 1. A Decision that cannot be written is
// answered 500 and logged.
func Deny(code int, msg string) Decision {
	return Decision{Action: format.Deny, Code: code, Msg: msg}
}

// Drop tells the sender the event succeeded while nobody receives it. For
// Tencent it is ErrorCode 2. The AppCommand and OpenIM protocols cannot
// express a drop, so there it is answered as a deny, code 403 and msg
// "dropped": the event is still not delivered, but the sender is told.
func Drop() Decision { return Decision{Action: format.Drop} }

// Package wire holds the facts of the two callback protocols, defined
// once for both sides of the wire: the Dispatcher (package callback) that
// addresses, signs and reads callbacks, and the App-backend side (package
// receiver, callbacktest and the imcallback CLI) that verifies and answers
// them. It has no state and no policy: query parameter names, answer
// fields and codes, the Standard Webhooks headers and signature, Tencent's
// Sign and the whsec_ secret format.
package wire

import "net/url"

// Query parameters and answer of the AppCommand protocol:
// POST {URL}?appId=..&command=.., answered by {"code", "msg", "data"}.
const (
	ParamAppID   = "appId"
	ParamCommand = "command"

	// SeedOK is the code with which a AppCommand answer allows the event; any
	// other code denies it.
	SeedOK = 200
	// SeedOKMsg is the msg of an allow the sender or the receiver writes
	// by itself.
	SeedOKMsg = "success"
)

// SeedFields are the keys of a AppCommand answer.
var SeedFields = [...]string{"code", "msg", "data"}

// Query parameters of the Tencent protocol:
// POST {URL}?SdkAppid=..&CallbackCommand=..&contenttype=json[&ClientIP=..]
// [&OptPlatform=..][&RequestTime=..&Sign=..].
const (
	ParamSdkAppID        = "SdkAppid"
	ParamCallbackCommand = "CallbackCommand"
	ParamContentType     = "contenttype"
	ParamClientIP        = "ClientIP"
	ParamOptPlatform     = "OptPlatform"
	ParamRequestTime     = "RequestTime"
	ParamSign            = "Sign"

	// ContentTypeJSON is the value of ParamContentType.
	ContentTypeJSON = "json"
)

// TencentReserved lists the query parameters the Tencent protocol sets.
var TencentReserved = [...]string{ParamSdkAppID, ParamCallbackCommand, ParamContentType,
	ParamClientIP, ParamOptPlatform, ParamRequestTime, ParamSign}

// The fields of every Tencent answer, {"ActionStatus": "OK", "ErrorCode":
// 0, "ErrorInfo": ""}, and the ErrorCodes with a meaning of their own:
// any other code denies, and 120001 to 130000 also pass ErrorInfo on to
// the client.
const (
	FieldActionStatus = "ActionStatus"
	FieldErrorCode    = "ErrorCode"
	FieldErrorInfo    = "ErrorInfo"

	// ActionStatusOK is the ActionStatus of every answer.
	ActionStatusOK = "OK"

	TencentAllow = 0
	TencentDeny  = 1
	TencentDrop  = 2
)

// TencentEnvelope lists the keys of every Tencent answer; any other key
// carries data (MsgBody, CloudCustomData, RefusedMembers_Account, ...).
var TencentEnvelope = [...]string{FieldActionStatus, FieldErrorCode, FieldErrorInfo}

// Address reads a request's app ID, command and end-user client from its
// query, unverified and unparsed: Tencent's parameters when tencent is
// set, else AppCommand's (which carry no client).
func Address(tencent bool, q url.Values) (app, command, ip, platform string) {
	if tencent {
		return q.Get(ParamSdkAppID), q.Get(ParamCallbackCommand), q.Get(ParamClientIP), q.Get(ParamOptPlatform)
	}
	return q.Get(ParamAppID), q.Get(ParamCommand), "", ""
}

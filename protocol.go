package callback

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// wire is one callback wire format: how a call is addressed and how the App
// backend's answer is read. Before and After know nothing else of it, so a
// new format is one type implementing these methods.
type wire interface {
	// reserved lists the query parameters the format sets itself; a
	// configured URL's own values for them are dropped.
	reserved() []string
	// appendQuery appends the call's query parameters to b.
	appendQuery(b []byte, appID int, command string) []byte
	// decode reads a 2xx answer. It returns an error wrapping ErrBadAnswer
	// when the answer is not the format's.
	decode(answer []byte) (Response, error)
}

// Codes and messages the Dispatcher itself puts in a Response.
const (
	// CodeOK is the seed protocol's success code: the App allows the event.
	// A Response that failed open carries it too.
	CodeOK = 200
	// CodeFailClosed is the Code of a Response denied because the callback
	// of a FailClosed command failed.
	CodeFailClosed = 503
	// MsgOK is the Msg of an allowed Response made by the Dispatcher: a
	// disabled command or a failure that failed open.
	MsgOK = "success"
	// MsgFailClosed is the Msg of a Response denied because the callback of
	// a FailClosed command failed.
	MsgFailClosed = "callback failed"
)

// seedWire is the seed design's format: POST {URL}?appId=..&command=..,
// answered by {"code": int, "msg": string, "data": any}; code 200 allows.
type seedWire struct{}

func (seedWire) reserved() []string { return []string{paramAppID, paramCommand} }

func (seedWire) appendQuery(b []byte, appID int, command string) []byte {
	return appendSeedQuery(b, appID, command)
}

// seedAnswer is the seed protocol's answer. Code is a pointer so that a
// missing code is told apart from 0: the seed read it as 0 and so denied.
type seedAnswer struct {
	Code *int            `json:"code"`
	Msg  string          `json:"msg"`
	Data json.RawMessage `json:"data"`
}

func (seedWire) decode(answer []byte) (Response, error) {
	var a seedAnswer
	if err := json.Unmarshal(answer, &a); err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if a.Code == nil {
		return Response{}, fmt.Errorf("%w: no \"code\"", ErrBadAnswer)
	}
	r := Response{Code: *a.Code, Msg: a.Msg, Data: rawData(a.Data)}
	if r.Code != CodeOK {
		r.Action = Deny
	}
	return r, nil
}

// rawData returns data, or nil when it is absent or JSON null.
func rawData(data json.RawMessage) json.RawMessage {
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return nil
	}
	return data
}

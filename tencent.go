package callback

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback/internal/wire"
)

// tencentWire is Tencent Cloud IM's third-party callback format:
// POST {URL}?SdkAppid=..&CallbackCommand=..&contenttype=json[&ClientIP=..]
// [&OptPlatform=..][&RequestTime=..&Sign=..], answered by
// {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", ...}.
type tencentWire struct {
	token string // signs RequestTime; empty: unsigned
}

func newTencentWire(secret string) (*tencentWire, error) {
	if strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("%w: the Tencent Secret (token) is one token, without spaces or control characters", ErrInvalidConfig)
	}
	return &tencentWire{token: secret}, nil
}

func (*tencentWire) reserved() []string {
	return wire.TencentReserved[:]
}

func (*tencentWire) sendsDevice() bool { return true }

func (*tencentWire) appendQuery(b []byte, c *call) []byte {
	b = append(b, wire.ParamSdkAppID+"="...)
	b = strconv.AppendInt(b, int64(c.appID), 10)
	b = append(b, "&"+wire.ParamCallbackCommand+"="...)
	b = append(b, url.QueryEscape(c.command)...)
	b = append(b, "&"+wire.ParamContentType+"="+wire.ContentTypeJSON...)
	if c.device.ip != "" {
		b = append(b, "&"+wire.ParamClientIP+"="...)
		b = append(b, url.QueryEscape(c.device.ip)...)
	}
	if c.device.platform != "" {
		b = append(b, "&"+wire.ParamOptPlatform+"="...)
		b = append(b, url.QueryEscape(c.device.platform)...)
	}
	return b
}

func (w *tencentWire) signs() bool { return w.token != "" }

// sign appends RequestTime (unix seconds) and Sign, the lowercase hex
// SHA-256 of token + RequestTime (wire.AppendTencentSign), to the query.
// Tencent signs neither the body nor the other parameters.
func (w *tencentWire) sign(req *http.Request, _ string, _ []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	q := make([]byte, 0, len(req.URL.RawQuery)+len(wire.ParamRequestTime)+len(ts)+len(wire.ParamSign)+wire.TencentSignLen+4)
	q = append(q, req.URL.RawQuery...)
	q = append(q, "&"+wire.ParamRequestTime+"="...)
	q = append(q, ts...)
	q = append(q, "&"+wire.ParamSign+"="...)
	q = wire.AppendTencentSign(q, w.token, ts)
	req.URL.RawQuery = string(q)
}

// decode maps ErrorCode: 0 allows, 2 drops, anything else denies (1, or
// 120001..130000 with a text for the client). Code is ErrorCode and Msg is
// ErrorInfo. When the answer has keys beyond the envelope, Data is the
// whole answer. ActionStatus is not read: ErrorCode decides. Keys are
// matched exactly, as Tencent does; two top-level keys that are equal or
// differ only in case ({"ErrorCode":1,"errorcode":0}), or an envelope key
// in another case, are ErrBadAnswer.
func (*tencentWire) decode(answer []byte) (Response, error) {
	if err := checkAnswer(answer, wire.TencentEnvelope[:]...); err != nil {
		return Response{}, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(answer, &fields); err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	raw, ok := fields[wire.FieldErrorCode]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return Response{}, fmt.Errorf("%w: no \"ErrorCode\"", ErrBadAnswer)
	}
	var r Response
	if err := json.Unmarshal(raw, &r.Code); err != nil {
		return Response{}, fmt.Errorf("%w: \"ErrorCode\" is not an integer", ErrBadAnswer)
	}
	if raw, ok := fields[wire.FieldErrorInfo]; ok {
		if err := json.Unmarshal(raw, &r.Msg); err != nil {
			return Response{}, fmt.Errorf("%w: \"ErrorInfo\" is not a string", ErrBadAnswer)
		}
	}
	switch r.Code {
	case wire.TencentAllow:
		r.Action = Allow
	case wire.TencentDrop:
		r.Action = Drop
	default:
		r.Action = Deny
	}
	extra := len(fields)
	for _, k := range wire.TencentEnvelope {
		if _, ok := fields[k]; ok {
			extra--
		}
	}
	if extra > 0 {
		r.Data = bytes.Clone(answer) // answer is a pooled buffer
	}
	return r, nil
}

package callback_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/imcallback/callback"
)

// The memo of the last plain allow answer must never leak into other
// answers: one Dispatcher gets allow, deny, rewrite and allow again, twice.
func TestBeforeAnswerMemoKeepsAnswersApart(t *testing.T) {
	answers := []struct {
		body string
		want callback.Response
	}{
		{`{"code":200,"msg":"success"}`, callback.Response{Code: 200, Msg: "success", Action: callback.Allow}},
		{`{"code":200,"msg":"success"}`, callback.Response{Code: 200, Msg: "success", Action: callback.Allow}},
		{`{"code":40001,"msg":"banned"}`, callback.Response{Code: 40001, Msg: "banned", Action: callback.Deny}},
		{`{"code":200,"msg":"success","data":{"text":"***"}}`, callback.Response{Code: 200, Msg: "success", Action: callback.Allow, Data: json.RawMessage(`{"text":"***"}`)}},
		{`{"code":200,"msg":"ok"}`, callback.Response{Code: 200, Msg: "ok", Action: callback.Allow}},
		{`{"code":200,"msg":"success"}`, callback.Response{Code: 200, Msg: "success", Action: callback.Allow}},
		{`{"code":200,"msg":"success"`, callback.Response{Code: 200, Msg: "success", Action: callback.Allow}}, // truncated: fails open
	}
	var n atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		answerJSON(200, answers[int(n.Add(1)-1)%len(answers)].body)(w, r)
	})
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	for round := range 2 {
		for i, a := range answers {
			got := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
			if i == len(answers)-1 {
				assert.ErrorIs(t, got.Err, callback.ErrBadAnswer, "round %d answer %d", round, i)
				got.Err = nil
			}
			assert.Equal(t, a.want, got, "round %d answer %d: %s", round, i, a.body)
		}
	}
}

package receiver_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback/receiver"
)

// refusal is one call of Config.OnReject.
type refusal struct {
	method, command string
	status          int
	reason          string
}

// refusals records the calls of Config.OnReject.
type refusals struct {
	mu  sync.Mutex
	got []refusal
}

func (rs *refusals) onReject(r *http.Request, status int, reason error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.got = append(rs.got, refusal{r.Method, r.URL.Query().Get("command"), status, reason.Error()})
}

// take returns the calls so far and forgets them.
func (rs *refusals) take() []refusal {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	got := rs.got
	rs.got = nil
	return got
}

// Every kind of refusal reaches Config.OnReject, with the status and the
// reason the sender gets, before the answer is written; answered requests
// and failed handlers do not.
func TestOnRejectSeesEveryRefusal(t *testing.T) {
	var rs refusals
	h := newHandler(t, receiver.Config{Secret: secretNew, Dedup: 1, MaxBodyBytes: 64,
		ReadTimeout: 300 * time.Millisecond, OnReject: rs.onReject})
	h.Handle("fail", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Decision{}, errors.New("handler down")
	})
	s := serve(t, h)
	body := []byte(`{}`)
	now := time.Now()

	for _, tc := range []struct {
		name, method, query string
		header              http.Header
		body                []byte
		status              int
	}{
		{"method", http.MethodGet, "appId=1&command=c", nil, nil, http.StatusMethodNotAllowed},
		{"body too large", http.MethodPost, "appId=1&command=c", nil, []byte(`{"x":"` + strings.Repeat("x", 64) + `"}`), http.StatusRequestEntityTooLarge},
		{"unsigned", http.MethodPost, "appId=1&command=c", nil, body, http.StatusUnauthorized},
		{"wrong signature", http.MethodPost, "appId=1&command=c", signed(t, secretOld, "msg_0", now, body), body, http.StatusUnauthorized},
		{"stale timestamp", http.MethodPost, "appId=1&command=c", signed(t, secretNew, "msg_0", now.Add(-time.Hour), body), body, http.StatusUnauthorized},
		{"no command", http.MethodPost, "appId=1", signed(t, secretNew, "msg_0", now, body), body, http.StatusBadRequest},
		{"body not JSON", http.MethodPost, "appId=1&command=c", signed(t, secretNew, "msg_0", now, []byte(`{`)), []byte(`{`), http.StatusBadRequest},
		{"answered", http.MethodPost, "appId=1&command=c", signed(t, secretNew, "msg_1", now, body), body, http.StatusOK},
		{"replayed under another command", http.MethodPost, "appId=1&command=other", signed(t, secretNew, "msg_1", now, body), body, http.StatusConflict},
		{"dedup full", http.MethodPost, "appId=1&command=c", signed(t, secretNew, "msg_2", now, body), body, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, answer := post(t, tc.method, s.URL+"/callback?"+tc.query, tc.header, tc.body)
			require.Equal(t, tc.status, status, answer)
			got := rs.take() // no wait: OnReject ran before the answer
			if status == http.StatusOK {
				assert.Empty(t, got, "an answered request is no refusal")
				return
			}
			require.Len(t, got, 1, "one OnReject call per refused request")
			assert.Equal(t, tc.status, got[0].status, "OnReject's status is the answer's")
			assert.Equal(t, strings.TrimSpace(answer), got[0].reason, "OnReject's reason is the answer's body")
			assert.Equal(t, tc.method, got[0].method, "OnReject gets the request")
		})
	}

}

// A handler's failure (500) is not a refusal: OnReject is not called.
func TestOnRejectNotForFailedHandlers(t *testing.T) {
	var rs refusals
	h := newHandler(t, receiver.Config{OnReject: rs.onReject})
	h.Handle("fail", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Decision{}, errors.New("handler down")
	})
	h.Handle("bad", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Deny(200, "Seed reads 200 as allow"), nil
	})
	s := serve(t, h)
	for _, cmd := range []string{"fail", "bad"} {
		status, _ := post(t, http.MethodPost, s.URL+"/callback?appId=1&command="+cmd, nil, []byte(`{}`))
		assert.Equal(t, http.StatusInternalServerError, status, cmd)
	}
	assert.Empty(t, rs.take())
}

// A body trickled past Config.ReadTimeout reaches OnReject as 408.
func TestOnRejectSeesReadTimeout(t *testing.T) {
	var rs refusals
	h := newHandler(t, receiver.Config{ReadTimeout: 200 * time.Millisecond, OnReject: rs.onReject})
	conn := startBody(t, serve(t, h))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusRequestTimeout, res.StatusCode)
	got := rs.take()
	require.Len(t, got, 1)
	assert.Equal(t, http.StatusRequestTimeout, got[0].status)
	assert.Equal(t, "c", got[0].command)
}

// Request.Query carries the whole query, the sender's own parameters too.
func TestRequestQuery(t *testing.T) {
	h := newHandler(t, receiver.Config{})
	var got string
	h.Handle("c", func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		got = req.Query.Get("tenant") + " " + req.Query.Get("command")
		return receiver.Allow(), nil
	})
	s := serve(t, h)
	status, _ := post(t, http.MethodPost, s.URL+"/callback?tenant=acme&appId=1&command=c", nil, []byte(`{}`))
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "acme c", got)
}

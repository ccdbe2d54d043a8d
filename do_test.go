package callback_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// The Dispatcher sends its requests on its transport without an
// http.Client; these are the client's behaviours it keeps.

func TestURLUserInfoIsBasicAuth(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200,"msg":"success"}`))
	url := strings.Replace(b.URL, "http://", "http://ops:hunter2%20%2F@", 1) + "/cb"
	d, _ := newDispatcher(t, callback.Config{URL: url})

	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	require.NoError(t, r.Err)
	require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)))
	require.Eventually(t, func() bool { return b.count() == 2 }, time.Minute, time.Millisecond, "the After must be delivered")
	for _, got := range b.requests() {
		req := http.Request{Header: got.Header}
		user, pass, ok := req.BasicAuth()
		assert.True(t, ok, "%v: no basic auth", got.Query["command"])
		assert.Equal(t, "ops", user)
		assert.Equal(t, "hunter2 /", pass)
	}
}

func TestRedirectWithBadLocation(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", "http://[::1")
		w.WriteHeader(http.StatusFound)
	})
	d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/cb"})

	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	require.Error(t, r.Err)
	assert.NotErrorIs(t, r.Err, callback.ErrRedirect, "http.Client fails a redirect it cannot parse")
	assert.Contains(t, r.Err.Error(), `failed to parse Location header "http://[::1"`)
	assert.Contains(t, r.Err.Error(), "Post ")
}

func TestHTTPSToPlainHTTP(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200,"msg":"success"}`))
	d, _ := newDispatcher(t, callback.Config{URL: strings.Replace(b.URL, "http://", "https://", 1) + "/cb"})

	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	require.ErrorIs(t, r.Err, http.ErrSchemeMismatch)
}

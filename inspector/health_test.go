package inspector_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

// TestEndpointHealth: a disabled endpoint shows as such in api/endpoints
// and on the page, with an Enable button; api/enable, authorised as a
// replay is, enables it again.
func TestEndpointHealth(t *testing.T) {
	a := newApp(t, always(http.StatusGone))
	d := newDispatcher(t, callback.Config{URL: a.URL})
	base := serve(t, d, inspector.Options{Authorize: func(*http.Request) bool { return true }})
	closed := serve(t, d, inspector.Options{})

	r := d.Before(context.Background(), 1, "msg", []byte(`{}`))
	require.ErrorIs(t, r.Err, callback.ErrEndpointDisabled)
	var eps inspector.EndpointsResponse
	getJSON(t, base+"api/endpoints", &eps)
	require.Len(t, eps.Endpoints, 1)
	assert.Equal(t, "disabled", eps.Endpoints[0].Health)
	p := getPage(t, base)
	assert.Contains(t, text(p.byID("endpoints")), "disabled")
	assert.Contains(t, formsOf(p), formInfo{"post", "api/enable"}, "an Enable button")

	form := url.Values{"url": {eps.Endpoints[0].URL}}
	res := post(t, closed+"api/enable", form, nil)
	assert.Equal(t, http.StatusForbidden, res.StatusCode, "without Authorize or Scope")
	res = post(t, base+"api/enable", url.Values{"url": {"http://127.0.0.1:1/none"}}, nil)
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
	res = post(t, base+"api/enable", form, nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	getJSON(t, base+"api/endpoints", &eps)
	assert.Equal(t, "ok", eps.Endpoints[0].Health)
	assert.Empty(t, d.Stats().Disabled)
}

// formsOf lists the page's forms.
func formsOf(p page) []formInfo {
	var out []formInfo
	for _, n := range p.all("form") {
		out = append(out, formInfo{method: attr(n, "method"), action: attr(n, "action")})
	}
	return out
}

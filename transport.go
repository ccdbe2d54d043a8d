package callback

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// newTransport returns the Dispatcher's own transport: keep-alive on, with
// at most MaxConnsPerHost connections per host and an idle pool as large,
// so that calls beyond the cap wait for a pooled connection instead of
// dialling one that the pool would then close (Go's default keeps 2 idle
// connections per host and caps nothing). TLS sessions are resumed from a
// cache (one session per server name, for up to MaxConnsPerHost names) set
// on a clone of Config.TLSConfig, so the caller's is not changed; a cache
// the caller set is kept. HTTP/2 is offered only with Config.HTTP2. With
// an SSRFGuard, every address is checked as it is dialled, and no proxy is
// used. Answer headers are bounded by MaxResponseHeaderBytes; Go counts
// the headers of 1xx answers against it too, as long as no
// httptrace.ClientTrace.Got1xxResponse is installed, so a flood of 1xx
// answers is bounded as well.
func newTransport(s *settings) *http.Transport {
	dialer := &net.Dialer{
		Timeout:   30 * time.Second, // bounded further by each call's context
		KeepAlive: 30 * time.Second,
	}
	proxy := http.ProxyFromEnvironment
	if s.SSRFGuard != nil {
		dialer.Control = s.SSRFGuard.control
		proxy = nil
	}
	tlsConfig := &tls.Config{}
	if s.TLSConfig != nil {
		tlsConfig = s.TLSConfig.Clone()
	}
	if tlsConfig.ClientSessionCache == nil {
		tlsConfig.ClientSessionCache = tls.NewLRUClientSessionCache(s.MaxConnsPerHost)
	}
	if !s.HTTP2 {
		// The caller's NextProtos (shared by Clone: copied) must not offer
		// what the transport does not speak.
		tlsConfig.NextProtos = slices.DeleteFunc(slices.Clone(tlsConfig.NextProtos), func(p string) bool { return p == "h2" })
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(s.HTTP2)
	return &http.Transport{
		Proxy:                  proxy,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConfig,
		Protocols:              protocols,
		MaxConnsPerHost:        s.MaxConnsPerHost,
		MaxIdleConns:           s.MaxIdleConnsPerHost,
		MaxIdleConnsPerHost:    s.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: s.MaxResponseHeaderBytes,
	}
}

// do sends req, one attempt, as an http.Client with no jar, no timeout and
// a CheckRedirect that never follows would, straight on t: such a client
// still copies the request's headers for a redirect on every call (a map,
// its values and a closure), which a call that never follows one does not
// need. What the client would do otherwise, do does too: it sends the
// URL's user information as basic auth (unless the request has an
// Authorization header), returns an HTTPS request answered in plain HTTP
// as http.ErrSchemeMismatch, a redirect whose Location does not parse as
// an error, and any other redirect as the answer; its errors are
// *url.Error, as the client's. Each call bounds its own request (its
// context's timeout), and an attempt reports its outcome to its
// endpoint's breaker and the metrics itself, so nothing wraps the
// transport.
func do(t *http.Transport, req *http.Request) (*http.Response, error) {
	if u := req.URL.User; u != nil && req.Header.Get("Authorization") == "" {
		password, _ := u.Password()
		req.SetBasicAuth(u.Username(), password)
	}
	res, err := t.RoundTrip(req)
	if err != nil {
		if tlsErr, ok := err.(tls.RecordHeaderError); ok && string(tlsErr.RecordHeader[:]) == "HTTP/" {
			err = http.ErrSchemeMismatch
		}
		return nil, urlError(req, err)
	}
	if redirects(res.StatusCode) {
		if loc := res.Header.Get("Location"); loc != "" {
			if _, err := req.URL.Parse(loc); err != nil {
				_ = res.Body.Close()
				return nil, urlError(req, fmt.Errorf("failed to parse Location header %q: %v", loc, err))
			}
		}
	}
	return res, nil
}

// redirects reports whether an http.Client would follow an answer with
// status code, a POST's with a body it can send again, if it followed
// redirects.
func redirects(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// urlError is err as http.Client returns it for req: in a *url.Error
// naming the method and the URL without its password.
func urlError(req *http.Request, err error) error {
	u := req.URL.String()
	if _, has := req.URL.User.Password(); has {
		u = strings.Replace(u, req.URL.User.String()+"@", req.URL.User.Username()+":***@", 1)
	}
	return &url.Error{Op: req.Method[:1] + strings.ToLower(req.Method[1:]), URL: u, Err: err}
}

// retryPolicy retries what may succeed later: transport errors, 408, 429
// and 5xx but 501. It never retries a redirect, another 4xx or a call whose
// context has ended.
func retryPolicy(ctx context.Context, res *http.Response, err error) (bool, error) {
	if err == nil && res.StatusCode == http.StatusRequestTimeout {
		return ctx.Err() == nil, ctx.Err()
	}
	return retryablehttp.ErrorPropagatedRetryPolicy(ctx, res, err)
}

// backoff waits exponentially longer between attempts, from lo up to hi,
// with jitter (a random wait between half and all of it) so that many
// events failing together do not retry together. A Retry-After on a 429
// or 503 answer is honoured without jitter, capped at waitCap.
func backoff(lo, hi, waitCap time.Duration, n int, res *http.Response) time.Duration {
	if res != nil && res.Header.Get("Retry-After") != "" {
		if w := retryablehttp.DefaultBackoff(lo, hi, n, res); w > 0 {
			return min(w, waitCap)
		}
	}
	w := retryablehttp.DefaultBackoff(lo, hi, n, nil)
	if half := w / 2; half > 0 {
		w = half + rand.N(half+1)
	}
	return w
}

package callback

import (
	"context"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
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

// newClient returns the HTTP client shared by Before and After. It never
// follows a redirect: a 3xx is a failed callback. After retries are the
// Dispatcher's own (see deliverOnce), one request per hand-out, so the
// client makes one attempt per call.
func newClient(t *http.Transport) *http.Client {
	return &http.Client{
		Transport: attemptTransport{base: t},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
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

// attemptKey marks a request context that carries an *attempt.
type attemptKey struct{}

// attempt is the state of one After attempt.
type attempt struct {
	timeout time.Duration       // bound of the attempt
	n       int                 // its number: 1 for the first attempt of the event
	sign    func(*http.Request) // signs the request; nil: unsigned
	stats   *commandStats       // counts retries and times attempts
	permit  permit              // the endpoint's admission, taken before
	sent    bool                // the request went out
	began   time.Time           // when it went out, and how long until the
	took    time.Duration       // answer's headers: for the attempt log
}

// attemptTransport bounds an After attempt by its own timeout, signs it
// afresh (a Standard Webhooks timestamp or a Tencent RequestTime must be
// new) and reports its outcome to the endpoint's breaker (through the
// permit the queue or deliverOnce took, without waiting, before the
// attempt) and to the metrics. Requests without an attempt (Before) pass
// through untouched.
type attemptTransport struct {
	base http.RoundTripper
}

func (t attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		return t.base.RoundTrip(req)
	}
	caller := req.Context() // Close's deadline, not the attempt's timeout
	a.sent = true
	start := a.stats.attemptStart(a.n)
	ctx, cancel := context.WithTimeout(caller, a.timeout)
	if a.sign != nil {
		req = req.Clone(ctx) // a RoundTripper must not change the caller's request
		a.sign(req)
	} else {
		req = req.WithContext(ctx)
	}
	res, err := t.base.RoundTrip(req)
	a.permit.end(caller, res, err)
	a.permit = permit{}
	a.began, a.took = start, a.stats.attemptEnd(ctx, start, res, err)
	if err != nil {
		cancel()
		return nil, err
	}
	res.Body = &cancelOnClose{ReadCloser: res.Body, cancel: cancel}
	return res, nil
}

// cancelOnClose ends an attempt's context once its body is closed, so the
// timeout also bounds reading the answer.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

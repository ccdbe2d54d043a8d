package callback

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// newTransport returns the Dispatcher's own transport: keep-alive on, with
// an idle pool sized for the load. Go's default keeps 2 idle connections per
// host, so under concurrency most calls would open a new TCP connection.
// With an SSRFGuard, every address is checked as it is dialled, and no proxy
// is used. Answer headers are bounded by MaxResponseHeaderBytes; Go counts
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
	return &http.Transport{
		Proxy:                  proxy,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        s.TLSConfig,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           s.MaxIdleConnsPerHost,
		MaxIdleConnsPerHost:    s.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: s.MaxResponseHeaderBytes,
	}
}

// newClient returns the HTTP client shared by Before and After. It never
// follows a redirect: a 3xx is a failed callback. Its transport is wrapped
// so that retryablehttp's CloseIdleConnections on a failed call cannot drop
// the whole pool (go-retryablehttp issue #237); Close closes it instead.
func newClient(t *http.Transport, eps *endpoints) *http.Client {
	return &http.Client{
		Transport: attemptTransport{base: t, eps: eps},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// newRetryClient returns the retrying client of After deliveries. Its logger
// is off: the Dispatcher logs outcomes itself through slog, once per event.
func newRetryClient(s *settings, c *http.Client) *retryablehttp.Client {
	waitCap := s.RetryWaitMax
	return &retryablehttp.Client{
		HTTPClient:   c,
		Logger:       nil,
		RetryWaitMin: s.RetryWaitMin,
		RetryWaitMax: s.RetryWaitMax,
		RetryMax:     s.Retries,
		CheckRetry:   retryPolicy,
		Backoff: func(lo, hi time.Duration, n int, res *http.Response) time.Duration {
			return backoff(lo, hi, waitCap, n, res)
		},
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
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

// attemptKey marks a request context that carries an *attempts.
type attemptKey struct{}

// attempts is the state of one After delivery, across its attempts.
// Attempts run one after another on the delivering worker, so it needs no
// lock.
type attempts struct {
	timeout time.Duration       // bound of one attempt
	n       int                 // attempts made
	sign    func(*http.Request) // signs one attempt's copy of the request; nil: unsigned
	stats   *commandStats       // counts retries and times attempts; may be nil
	// wait bounds the wait for the endpoint's breaker and limits; nil
	// means the request's context does.
	wait context.Context
}

// attemptTransport bounds each attempt of an After delivery by its own
// timeout (retryablehttp's request context bounds the whole delivery),
// counts attempts and signs each one afresh. Before each attempt it waits
// for the endpoint's breaker and After limits (see endpoint.acquire), so an
// attempt is made, and counted against Retries, only when it can go to the
// network; its outcome is reported to the breaker and the metrics. Requests without attempts (Before) pass
// through untouched. It does not implement CloseIdleConnections, on purpose:
// see newClient.
type attemptTransport struct {
	base http.RoundTripper
	eps  *endpoints
}

func (t attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempts)
	if a == nil {
		return t.base.RoundTrip(req)
	}
	wait := a.wait
	if wait == nil {
		wait = req.Context()
	}
	end, err := t.eps.of(req.URL).acquire(wait)
	if err != nil {
		return nil, err
	}
	a.n++
	start := a.stats.attemptStart(a.n)
	ctx, cancel := context.WithTimeout(req.Context(), a.timeout)
	if a.sign != nil {
		req = req.Clone(ctx) // a RoundTripper must not change the caller's request
		a.sign(req)
	} else {
		req = req.WithContext(ctx)
	}
	res, err := t.base.RoundTrip(req)
	end(res, err)
	a.stats.attemptEnd(ctx, start, res, err)
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

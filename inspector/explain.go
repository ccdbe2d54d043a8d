package inspector

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback"
)

// TimeFormat is how the inspector shows a time: in the server's local
// time zone, with the zone's name, to the millisecond. The chat example's
// panel uses it too, so that both read alike.
const TimeFormat = "2006-01-02 15:04:05.000 MST"

// Explain says in plain words why the call or attempt a failed, for a
// person rather than a log: "timed out after 2 s", "the App backend
// answered 503 Service Unavailable", "not sent: the endpoint's circuit
// breaker is open". It returns "" when a has no Error, and a.Error itself
// (without the "callback: " prefix) when it knows no better words. The
// raw a.Error stays the one to search logs for.
func Explain(a callback.Attempt) string {
	e := a.Error
	if e == "" {
		return ""
	}
	has := func(err error) bool { return strings.Contains(e, err.Error()) }
	if a.Status == 0 && has(callback.ErrStatus) { // a dead letter's error, without its record
		if i := strings.LastIndex(e, ": "); i >= 0 {
			a.Status, _ = strconv.Atoi(e[i+2:])
		}
	}
	switch {
	case has(callback.ErrBreakerOpen):
		return "not sent: the endpoint's circuit breaker is open after repeated failures"
	case has(callback.ErrStatus) && a.Status != 0:
		return "the App backend answered " + statusText(a.Status)
	case has(callback.ErrTimeout), strings.Contains(e, "context deadline exceeded"),
		strings.Contains(e, "Client.Timeout exceeded"), strings.Contains(e, "i/o timeout"):
		if a.Latency > 0 {
			return "timed out after " + seconds(a.Latency)
		}
		return "timed out"
	case has(callback.ErrSignatureRefused):
		return "the App backend refused the signature (401): a wrong secret, or a clock far off"
	case has(callback.ErrRedirect):
		return "the App backend answered a redirect, which is never followed"
	case has(callback.ErrAnswerTooLarge):
		return "the App backend's answer was too large"
	case has(callback.ErrBadAnswer):
		return "the App backend's answer is not the protocol's"
	case has(callback.ErrForbiddenAddress):
		return "not sent: the App backend's address is refused by the SSRF guard"
	case has(callback.ErrClosed):
		return "not sent: the IM server was shutting down"
	case has(callback.ErrQueueFull):
		return "not queued: the After queue was full"
	case has(callback.ErrResolve):
		return "not sent: the app's endpoint could not be found"
	case strings.Contains(e, "connection refused"):
		return "could not connect to the App backend (connection refused: is it running?)"
	case strings.Contains(e, "no such host"):
		return "could not connect: the App backend's host name does not resolve"
	case strings.Contains(e, "connection reset"), strings.HasSuffix(e, "EOF"):
		return "the connection broke before the App backend's answer came"
	case a.Status != 0 && (a.Status < 200 || a.Status > 299):
		return "the App backend answered " + statusText(a.Status)
	}
	return strings.TrimPrefix(e, "callback: ")
}

// statusText returns "503 Service Unavailable".
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// seconds returns d in seconds to a tenth, without a trailing ".0":
// "2 s", "0.2 s", "1.5 s".
func seconds(d time.Duration) string {
	s := d.Round(100 * time.Millisecond).Seconds()
	if s == 0 {
		return strconv.FormatFloat(d.Seconds()*1000, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(s, 'f', -1, 64) + " s"
}

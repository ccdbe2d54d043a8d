package callback

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults applied by Config.validate to the zero values of Config and of
// the Breaker and AfterLimit it holds. A Rule's zero Timeout means its
// endpoint's, resolved per route (newRoute).
const (
	defaultTimeout          = 2 * time.Second
	defaultQueueSize        = 10000
	defaultEndpointShare    = 4 // with a Resolver, an endpoint may fill a quarter of QueueSize
	defaultWorkers          = 16
	defaultRetries          = 4
	defaultRetryWaitMin     = 1 * time.Second
	defaultRetryWaitMax     = 30 * time.Second
	defaultMaxResponseBytes = 1 << 20
	defaultDrainTimeout     = 30 * time.Second
	defaultLogInterval      = 10 * time.Second // between a failing endpoint's summary lines
	defaultAttemptLog       = 1024             // records, about 200 KiB
	// defaultMaxResponseHeaderBytes bounds an answer's headers, 1xx
	// answers included; Go's own default is 10 MiB.
	defaultMaxResponseHeaderBytes = 64 << 10
	// defaultBeforeConcurrency is the Before concurrency the connection
	// cap is sized for when Config.MaxConnsPerHost is zero.
	defaultBeforeConcurrency = 256

	defaultBreakerConsecutive = 5
	defaultBreakerRatio       = 0.5
	defaultBreakerMinCalls    = 20
	defaultBreakerWindow      = 10 * time.Second
	defaultBreakerCooldown    = 5 * time.Second
	defaultAfterRate          = 1000 // per second, Tencent's default for push callbacks
)

// defaultRetrySchedule is Svix's: after the first attempt, 5 s, 5 min,
// 30 min, 2 h, 5 h, 10 h, 10 h; eight attempts in all.
var defaultRetrySchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Config configures a Dispatcher. The zero value of every field but URL means
// the documented default.
type Config struct {
	// URL is the App backend's callback URL, for example
	// http://127.0.0.1:8989/callback. Required unless Resolver is set;
	// http and https only. A query it carries is kept and merged with the
	// protocol's parameters.
	URL string

	// Resolver, if set, gives each app its own endpoint (URL, Protocol,
	// Secret, Timeout and Commands), looked up on every call, and takes
	// precedence over URL, Protocol and Secret, which are then not used
	// (URL is still checked if given). Timeout and Commands become the
	// defaults of every app. See Resolver and the sqlapps package.
	Resolver Resolver

	// SSRFGuard, if set, refuses to connect to loopback, private,
	// link-local, metadata and other internal addresses, checked at dial
	// time after DNS resolution. nil means off. Set it when apps supply
	// their own callback URLs (Resolver); see SSRFGuard.
	SSRFGuard *SSRFGuard

	// Protocol is the wire format. The zero value is AppCommand, the
	// format of the Java IM design; Tencent is Tencent Cloud IM's.
	Protocol Protocol

	// Secret authenticates the callbacks to the App backend. Empty means
	// unsigned. It is never logged and never put into an error.
	//
	// For AppCommand, it is one or more Standard Webhooks secrets, "whsec_"
	// followed by the standard base64 of a 24 to 64 byte key, separated
	// by spaces. Each request carries a signature made with each of them,
	// so an App backend can move from an old key to a new one without
	// downtime: configure "whsec_old whsec_new", switch the App backend to
	// the new key, then drop the old one.
	//
	// For Tencent, it is the callback token configured in the App backend
	// (one token, no spaces): each request carries RequestTime and Sign.
	//
	// New returns an error wrapping ErrInvalidConfig for a secret that
	// does not parse.
	Secret string

	// Timeout bounds one request to the App backend. 0 means 2 s. A Rule may
	// override it per command.
	Timeout time.Duration

	// Commands holds per-command settings. A command not listed is enabled
	// with the defaults. New copies the map: changing it later has no effect.
	// A name that is empty or not printable (see ErrInvalidCommand) is
	// refused.
	Commands map[string]Rule

	// TrustBodies skips the check that each event body given to Before
	// and After is valid JSON in UTF-8 (an empty body is still refused).
	// false, the default, checks every body and returns ErrInvalidBody
	// for a bad one, sending nothing; the check costs about 0.1 µs for a
	// 100-byte body, 3 µs at 4 KiB and 50 µs at 64 KiB (BenchmarkValidBody
	// on 2 cores). Set it only when the IM server marshals every body
	// itself (encoding/json makes valid UTF-8 JSON): a bad body is then
	// sent as it is, and the App backend sees it and
	// may refuse it (for Before, the rule's failure policy then applies;
	// for After, a 4xx answer dead-letters the event), or a receiver in
	// another language may read it differently.
	TrustBodies bool

	// QueueSize is how many After events may wait in memory, for a worker
	// or for a retry's time; each worker holds one more while it delivers
	// it. 0 means 10,000. When the queue is full, After returns
	// ErrQueueFull at once.
	QueueSize int

	// EndpointQueueSize is how many of the QueueSize events one endpoint
	// (callback URL, query included) may have waiting, so that the events
	// of a stuck App backend cannot fill the queue for the others: once an
	// endpoint has that many, After returns ErrQueueFull for its events
	// only. 0 means QueueSize without a Resolver (one endpoint) and a
	// quarter of QueueSize with one; it is at most QueueSize. Unused with
	// Queue set.
	EndpointQueueSize int

	// Workers is how many goroutines deliver After events concurrently.
	// 0 means 16. No worker waits for an endpoint that cannot take an
	// event; while several endpoints have work, they share the workers
	// (see AfterLimit.Concurrency).
	Workers int

	// Retries is how many times After delivery retries one event after its
	// first attempt fails with a transport error, 408, 429 or 5xx.
	// 0 means 4; a negative value means no retries.
	Retries int

	// RetryWaitMin and RetryWaitMax bound the exponential backoff (with
	// jitter) between After attempts. 0 means 1 s and 30 s. A Retry-After
	// header on a 429 or 503 answer is honoured, capped at RetryWaitMax.
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration

	// MaxResponseBytes caps how much of an answer is read. A larger answer
	// is a failure. 0 means 1 MiB.
	MaxResponseBytes int64

	// MaxResponseHeaderBytes caps the header of an answer, counting the
	// headers of any 1xx (informational) answers before it: a larger one
	// fails the call. 0 means 64 KiB (Go's own default is 10 MiB, which a
	// hostile App backend could make every call allocate).
	MaxResponseHeaderBytes int64

	// MaxConnsPerHost caps the connections to one App backend host,
	// dialling, in use and idle. A call that finds every connection busy
	// waits for one to come back to the pool rather than dialling (and
	// later closing) one more, so a burst of calls, a cold start above all,
	// opens at most this many connections and TLS handshakes. A Before
	// that times out while it waits for a connection (it neither dialled
	// nor got one, or only in the last half of its time) does not count
	// against the endpoint's breaker: the wait is the Dispatcher's, not
	// the App backend's fault.
	// 0 means Workers + 256, enough for the After workers and 256
	// concurrent Before calls each holding a connection, or
	// MaxIdleConnsPerHost if that is larger; raise it when the
	// App backend is slow to answer and more calls must be in flight at
	// once (with HTTP/1.1 a connection carries one call at a time).
	MaxConnsPerHost int

	// MaxIdleConnsPerHost sizes the keep-alive pool to the App backend.
	// 0 means MaxConnsPerHost, so that no connection the cap allows is
	// closed only to be dialled again; it is at most MaxConnsPerHost.
	MaxIdleConnsPerHost int

	// HTTP2 offers HTTP/2 to https App backends (by ALPN, falling back to
	// HTTP/1.1 when the backend does not speak it). false, the default,
	// means HTTP/1.1 over the pool of MaxConnsPerHost connections, which
	// measured faster for small calls (see BENCHMARKS.md). Plain http
	// always uses HTTP/1.1.
	HTTP2 bool

	// TLSConfig is used for https URLs (custom roots, client certificates).
	// nil means Go's defaults.
	TLSConfig *tls.Config

	// Logger receives failures at Error level, a burst of them summarised
	// (see LogInterval), and recoveries at Info level. nil means slog.Default().
	// Bodies and secrets are never logged; URLs are logged without their
	// query and user information.
	Logger *slog.Logger

	// DeadLetter, if set, receives every After event that could not be
	// delivered: attempts exhausted, a permanent failure (a 4xx other than
	// 408 and 429, a redirect), a disabled endpoint (see HealthPolicy) or
	// Close's deadline. It is called from the Dispatcher's worker
	// goroutines (and, for the memory queue's event to a disabled
	// endpoint, from After), so it must be safe for concurrent use
	// and should return quickly. Each dead letter is logged at Error level
	// whether or not DeadLetter is set (a burst is summarised: see
	// LogInterval).
	DeadLetter DeadLetterFunc

	// MeterProvider receives the Dispatcher's metrics (see the README's
	// Observability section). nil means otel.GetMeterProvider(): a no-op
	// until the host application installs an OpenTelemetry SDK.
	MeterProvider metric.MeterProvider

	// TracerProvider makes the Dispatcher's spans: one client span per
	// Before call, a child of the span in its ctx, and one per After
	// delivery attempt, in the trace of After's caller (see the README's
	// Observability section). nil means otel.GetTracerProvider(): a no-op
	// until the host application installs an OpenTelemetry SDK.
	TracerProvider trace.TracerProvider

	// Propagator writes the trace context onto every request (W3C
	// traceparent and tracestate with propagation.TraceContext) and
	// carries After's caller's context with the event. nil means
	// otel.GetTextMapPropagator(), which sends nothing until the host
	// application sets one.
	Propagator propagation.TextMapPropagator

	// LogInterval is how often an endpoint that keeps failing logs a
	// summary line (the number of failures and the last cause) instead of
	// one line per failure. The first failure is logged at once and the
	// recovery too. 0 means 10 s; a negative value logs every failure.
	LogInterval time.Duration

	// Queue holds After events until they are delivered. nil means a
	// bounded queue in memory (QueueSize, Workers, Retries, RetryWaitMin
	// and RetryWaitMax apply), whose events are lost if the process ends.
	// A durable Queue, such as the natsqueue package's, keeps them across
	// restarts and shares them among nodes; then After waits until the
	// Queue has stored the event, each hand-out of an event is one attempt
	// (but for a postponed one: see Postponer), and RetrySchedule spaces
	// the attempts. Once New succeeds the
	// Dispatcher owns the Queue and its Close closes it; if New fails, the
	// caller still owns it.
	Queue Queue

	// RetrySchedule is, for a Queue set above, the waits between the
	// attempts of an event: len(RetrySchedule)+1 attempts in all, then the
	// event is dead-lettered. nil means DefaultRetrySchedule (5 s, 5 min,
	// 30 min, 2 h, 5 h, 10 h, 10 h); an empty, non-nil schedule means one
	// attempt only. Unused by the memory queue.
	RetrySchedule []time.Duration

	// Breaker configures the circuit breaker of each endpoint. The zero
	// value means its defaults: see Breaker.
	Breaker Breaker

	// AfterLimit bounds the rate and concurrency of After deliveries to each
	// endpoint. The zero value means its defaults: see AfterLimit.
	AfterLimit AfterLimit

	// AttemptLog is how many records of recent Before calls and After
	// attempts the Dispatcher keeps in memory for Attempts and the
	// inspector package ("where did my callback go?"): time, app, command,
	// webhook-id, outcome, status, latency and error, never the body
	// (see AttemptBodies). 0 means 1024 (about 200 KiB); a negative value
	// turns the log off. A record costs about 50 ns and no allocation
	// (BENCHMARKS.md).
	AttemptLog int

	// AttemptBodies makes the attempt log keep a copy of each event's
	// body, shown by Attempts and the inspector. false, the default,
	// keeps no body: bodies are the IM server's users' messages.
	AttemptBodies bool

	// Health says when an endpoint that keeps failing, or answers 410
	// Gone, is disabled. The zero value means its defaults: see
	// HealthPolicy.
	Health HealthPolicy

	// OnHealth, if set, is told of each endpoint's changes of health:
	// failing, recovered, disabled, enabled. See HealthFunc. nil means
	// none (the changes are still logged, and shown by Stats).
	OnHealth HealthFunc

	// DrainTimeout bounds Close when its ctx has no deadline, so that
	// Close(context.Background()) cannot hang on a dead App backend: past
	// it, Close gives up as if ctx had ended (see Close). A ctx deadline,
	// earlier or later, takes precedence. 0 means 30 s; a negative value
	// means no limit (Close then waits for as long as ctx allows).
	DrainTimeout time.Duration
}

// settings is a validated Config with every default applied.
type settings struct {
	Config
}

// validate is New's one configuration pass: it checks c and applies every
// default, in this order: the URL and the SSRF guard; the non-negative
// fields; the scalar defaults (MaxConnsPerHost and MaxIdleConnsPerHost
// after Workers, EndpointQueueSize after QueueSize); RetrySchedule;
// Breaker; AfterLimit (after Workers); Commands; without a Resolver,
// Protocol and Secret. Its error wraps ErrInvalidConfig.
func (c Config) validate() (settings, error) {
	s := settings{Config: c}
	if c.Resolver == nil || c.URL != "" {
		if _, err := parseURL(c.URL); err != nil {
			return s, err
		}
	}
	if err := c.SSRFGuard.validate(); err != nil {
		return s, err
	}

	// In the order of Config's fields, so that the error names the first.
	for _, f := range []struct {
		name string
		n    int64
	}{
		{"Timeout", int64(c.Timeout)}, {"QueueSize", int64(c.QueueSize)},
		{"EndpointQueueSize", int64(c.EndpointQueueSize)}, {"Workers", int64(c.Workers)},
		{"RetryWaitMin", int64(c.RetryWaitMin)}, {"RetryWaitMax", int64(c.RetryWaitMax)},
		{"MaxResponseBytes", c.MaxResponseBytes}, {"MaxResponseHeaderBytes", c.MaxResponseHeaderBytes},
		{"MaxConnsPerHost", int64(c.MaxConnsPerHost)}, {"MaxIdleConnsPerHost", int64(c.MaxIdleConnsPerHost)},
	} {
		if f.n < 0 {
			return s, fmt.Errorf("%w: %s is negative", ErrInvalidConfig, f.name)
		}
	}

	// cmp.Or replaces a zero with the default. A negative LogInterval,
	// DrainTimeout or AttemptLog is kept as it is: it means log every
	// failure, no limit, no log, which the code that uses it tests for.
	s.Timeout = cmp.Or(c.Timeout, defaultTimeout)
	s.QueueSize = cmp.Or(c.QueueSize, defaultQueueSize)
	s.Workers = cmp.Or(c.Workers, defaultWorkers)
	s.RetryWaitMin = cmp.Or(c.RetryWaitMin, defaultRetryWaitMin)
	s.RetryWaitMax = cmp.Or(c.RetryWaitMax, defaultRetryWaitMax)
	s.MaxResponseBytes = cmp.Or(c.MaxResponseBytes, defaultMaxResponseBytes)
	s.DrainTimeout = cmp.Or(c.DrainTimeout, defaultDrainTimeout)
	s.MaxResponseHeaderBytes = cmp.Or(c.MaxResponseHeaderBytes, defaultMaxResponseHeaderBytes)
	s.MaxConnsPerHost = cmp.Or(c.MaxConnsPerHost, max(s.Workers+defaultBeforeConcurrency, c.MaxIdleConnsPerHost))
	s.MaxIdleConnsPerHost = min(cmp.Or(c.MaxIdleConnsPerHost, s.MaxConnsPerHost), s.MaxConnsPerHost)
	s.LogInterval = cmp.Or(c.LogInterval, defaultLogInterval)
	s.AttemptLog = cmp.Or(c.AttemptLog, defaultAttemptLog)
	s.Logger = cmp.Or(c.Logger, slog.Default())
	// The one place the MeterProvider is chosen: the observer uses s's.
	s.MeterProvider = cmp.Or(c.MeterProvider, otel.GetMeterProvider())
	s.TracerProvider = cmp.Or(c.TracerProvider, otel.GetTracerProvider())
	s.Propagator = cmp.Or(c.Propagator, otel.GetTextMapPropagator())
	// Not cmp.Or: a negative Retries means none, which the retry loop
	// needs as 0.
	switch {
	case c.Retries == 0:
		s.Retries = defaultRetries
	case c.Retries < 0:
		s.Retries = 0
	}
	switch {
	case c.EndpointQueueSize > 0:
		s.EndpointQueueSize = min(c.EndpointQueueSize, s.QueueSize)
	case c.Resolver == nil:
		s.EndpointQueueSize = s.QueueSize // one endpoint
	default:
		s.EndpointQueueSize = max(1, s.QueueSize/defaultEndpointShare)
	}
	if s.RetryWaitMax < s.RetryWaitMin {
		return s, fmt.Errorf("%w: RetryWaitMax %v is less than RetryWaitMin %v", ErrInvalidConfig, s.RetryWaitMax, s.RetryWaitMin)
	}
	if err := s.checkSchedule(); err != nil {
		return s, err
	}
	if err := s.Breaker.validate(); err != nil {
		return s, err
	}
	if err := s.AfterLimit.validate(s.Workers); err != nil {
		return s, err
	}
	if err := s.Health.validate(); err != nil {
		return s, err
	}
	if err := checkRules(c.Commands); err != nil {
		return s, err
	}
	s.Commands = maps.Clone(c.Commands) // Timeouts as given: each route resolves them
	if c.Resolver == nil {
		// Protocol and Secret, used only without a Resolver: the check of
		// the Endpoint New then prepares (newRoute checks it again).
		if _, err := newSender(c.Protocol, c.Secret); err != nil {
			return s, err
		}
	}
	return s, nil
}

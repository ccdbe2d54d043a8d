package callback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcallback/callback/format"
)

// A Resolver looks up the endpoint of an app: where and how its callbacks
// are sent. The Dispatcher calls Resolve on every Before and After of a
// Dispatcher whose Config.Resolver is set, on the caller's goroutine and
// with the caller's ctx, so Resolve must be safe for concurrent use, fast
// (a cache in front of any store) and bounded in time by itself or ctx.
//
// For an app it does not know, Resolve returns an error wrapping
// ErrUnknownApp. The Dispatcher neither changes the Endpoint it gets nor
// keeps its Commands map, so a Resolver may return the same map every time.
type Resolver interface {
	Resolve(ctx context.Context, appID int) (Endpoint, error)
}

// ResolverFunc adapts a function to a Resolver.
type ResolverFunc func(ctx context.Context, appID int) (Endpoint, error)

// Resolve calls f(ctx, appID).
func (f ResolverFunc) Resolve(ctx context.Context, appID int) (Endpoint, error) {
	return f(ctx, appID)
}

// Endpoint is where and how one app's callbacks are sent: what Config's
// URL, Protocol, Secret, Timeout and Commands say for a single App
// backend, per app.
type Endpoint struct {
	// URL is the app's callback URL, http or https. Required.
	URL string
	// Protocol is the app's wire format; the zero value is AppCommand.
	Protocol Protocol
	// Secret signs the app's callbacks as Config.Secret does; empty means
	// unsigned. It is never logged and never put into an error.
	Secret string
	// Timeout bounds one request; 0 means Config.Timeout.
	Timeout time.Duration
	// Commands overrides Config.Commands for this app, command by command
	// (a whole Rule each). A Rule's Timeout of 0 means the Endpoint's.
	Commands map[string]Rule
	// Disabled stops every callback of the app, as a disabled endpoint
	// does (see HealthPolicy): Before fails open (closed under FailClosed)
	// and After dead-letters, both with ErrEndpointDisabled and nothing
	// sent. A Resolver sets it for an app its operators disabled
	// (sqlapps: Store.SetDisabled), so that every node sees it.
	Disabled bool
}

// Validate reports whether the Dispatcher can use e: a URL New would
// accept, a known protocol, a secret that parses, no negative timeout and
// no empty or unprintable command name (see ErrInvalidCommand). Its error
// wraps ErrInvalidConfig and never contains the secret.
func (e *Endpoint) Validate() error {
	_, _, err := e.check()
	return err
}

// check validates e and returns its parsed URL and its protocol's sending
// side.
func (e *Endpoint) check() (*url.URL, format.Sender, error) {
	u, err := parseURL(e.URL)
	if err != nil {
		return nil, nil, err
	}
	if e.Timeout < 0 {
		return nil, nil, fmt.Errorf("%w: Timeout is negative", ErrInvalidConfig)
	}
	if err := checkRules(e.Commands); err != nil {
		return nil, nil, err
	}
	s, err := newSender(e.Protocol, e.Secret)
	if err != nil {
		return nil, nil, err
	}
	return u, s, nil
}

// parseURL parses and checks a callback URL.
func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: URL is required", ErrInvalidConfig)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: URL does not parse", ErrInvalidConfig)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: URL scheme %q is not http or https", ErrInvalidConfig, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: URL has no host", ErrInvalidConfig)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("%w: URL has a fragment", ErrInvalidConfig)
	}
	return u, nil
}

// equal reports whether e and o have the same settings.
func (e *Endpoint) equal(o *Endpoint) bool {
	return e.URL == o.URL && e.Protocol == o.Protocol && e.Secret == o.Secret &&
		e.Timeout == o.Timeout && maps.Equal(e.Commands, o.Commands) && e.Disabled == o.Disabled
}

// route is the prepared state of one endpoint: everything a call needs to
// reach it, built once per Endpoint settings so that a call only appends
// its own query parameters.
type route struct {
	sender   format.Sender
	address  format.Addresser // sender, when it addresses by path; nil otherwise
	protocol Protocol         // the Endpoint's, which sender speaks
	target   target
	url      *url.URL                 // the parsed callback URL, which keys per-endpoint state
	timeout  time.Duration            // of a command without a rule
	rules    map[string]Rule          // Config.Commands overridden by the Endpoint's, timeouts resolved
	answers  answerMemo               // the last plain allow answer of this endpoint, decoded by sender
	state    atomic.Pointer[urlState] // its breaker and limits, cached: see urlStates.forRoute
	disabled bool                     // Endpoint.Disabled
}

// newRoute prepares e, whose defaults are s's.
func newRoute(s *settings, e *Endpoint) (*route, error) {
	u, sender, err := e.check()
	if err != nil {
		return nil, err
	}
	r := &route{
		sender:   sender,
		protocol: e.Protocol,
		target:   newTarget(u, sender.Reserved()...),
		url:      u,
		timeout:  cmp.Or(e.Timeout, s.Timeout),
		rules:    make(map[string]Rule, len(s.Commands)+len(e.Commands)),
	}
	for _, rules := range []map[string]Rule{s.Commands, e.Commands} {
		for cmd, rule := range rules {
			rule.Timeout = cmp.Or(rule.Timeout, r.timeout)
			r.rules[cmd] = rule
		}
	}
	r.address, _ = sender.(format.Addresser)
	r.disabled = e.Disabled
	return r, nil
}

// newRequest returns the POST of body for call c, unsigned.
func (r *route) newRequest(ctx context.Context, c format.Call, body []byte) (*http.Request, error) {
	req, err := r.target.newRequest(ctx, r.sender, c, body)
	if err != nil {
		return nil, err
	}
	if r.address != nil {
		r.address.Address(req.URL, c)
	}
	return req, nil
}

// rule returns the settings of command, with its timeout resolved.
func (r *route) rule(command string) Rule {
	if rule, ok := r.rules[command]; ok {
		return rule
	}
	return Rule{Timeout: r.timeout}
}

// ruleOf returns command's rule on route r, or, when the app's endpoint
// could not be resolved (r is nil), the Config.Commands rule: the app's own
// rules are unknown then.
func ruleOf(r *route, s *settings, command string) Rule {
	if r == nil {
		return s.rule(command)
	}
	return r.rule(command)
}

// redact replaces the URL inside a transport error with the URL without its
// query or user information, so logs and errors never carry query parameters
// (signatures travel there in some protocols).
func (r *route) redact(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return &url.Error{Op: ue.Op, URL: r.target.logURL, Err: ue.Err}
	}
	return err
}

// routeOf returns the route of appID's calls: the static one of Config.URL,
// or the one prepared from the Endpoint that Config.Resolver returns. Its
// error wraps ErrResolve.
func (d *Dispatcher) routeOf(ctx context.Context, appID int) (*route, error) {
	if d.routes == nil {
		return d.static, nil
	}
	return d.routes.of(ctx, appID)
}

// protocolOf returns the protocol of route r, or Config.Protocol when the
// app could not be resolved (r is nil).
func (d *Dispatcher) protocolOf(r *route) Protocol {
	if r == nil {
		return d.s.Protocol
	}
	return r.protocol
}

// Endpoint returns where and how appID's callbacks go, as Before and After
// would send them now, so that an IM server whose apps speak different
// protocols can pick the command names and body shape before it builds the
// body: Config's URL and Protocol without a Resolver, the Resolver's
// Endpoint with one. Timeout is resolved (Config.Timeout when the Endpoint
// leaves it 0). Secret and Commands are left empty: a secret is never
// handed back, and a command's rule is the Dispatcher's to apply.
//
// With a Resolver it costs what the resolution of a Before call costs: one
// Resolve (which should be cached, as sqlapps' is) and a look-up in the
// Dispatcher's prepared routes; the Dispatcher allocates nothing when the
// app's settings did not change. An app that cannot be resolved is an error
// wrapping ErrResolve (and ErrUnknownApp, the store's error or
// ErrInvalidConfig), as in Before's Response.Err. The URL is returned as
// configured: redact it before logging it if it carries credentials.
func (d *Dispatcher) Endpoint(ctx context.Context, appID int) (Endpoint, error) {
	if d.routes == nil {
		return Endpoint{URL: d.s.URL, Protocol: d.s.Protocol, Timeout: d.s.Timeout}, nil
	}
	p, err := d.routes.prepare(ctx, appID)
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{URL: p.ep.URL, Protocol: p.ep.Protocol, Timeout: p.route.timeout}, nil
}

// routes caches the route of each resolved app, so that a Resolver that
// returns the same settings call after call does not have them parsed and
// prepared again, and a change of settings (a new URL, a rotated secret)
// takes effect on the next call.
type routes struct {
	s        *settings
	resolver Resolver

	mu sync.RWMutex // guards m
	m  map[int]*prepared
}

// prepared is the route built from an app's last resolved Endpoint, or the
// error that Endpoint gave.
type prepared struct {
	ep    Endpoint // as resolved, with its own copy of Commands
	route *route
	err   error
}

func newRoutes(s *settings) *routes {
	return &routes{s: s, resolver: s.Resolver, m: make(map[int]*prepared)}
}

func (rs *routes) of(ctx context.Context, appID int) (*route, error) {
	p, err := rs.prepare(ctx, appID)
	if err != nil {
		return nil, err
	}
	return p.route, nil
}

// prepare resolves appID and returns its prepared route, prepared again
// only when the resolved Endpoint changed. Its error wraps ErrResolve.
func (rs *routes) prepare(ctx context.Context, appID int) (*prepared, error) {
	ep, err := rs.resolver.Resolve(ctx, appID)
	if err != nil {
		if errors.Is(err, ErrUnknownApp) {
			rs.forget(appID)
		}
		return nil, fmt.Errorf("%w: app %d: %w", ErrResolve, appID, err)
	}
	rs.mu.RLock()
	p := rs.m[appID]
	rs.mu.RUnlock()
	if p == nil || !p.ep.equal(&ep) {
		p = &prepared{ep: ep}
		p.ep.Commands = maps.Clone(ep.Commands)
		p.route, p.err = newRoute(rs.s, &p.ep)
		rs.mu.Lock()
		rs.m[appID] = p
		rs.mu.Unlock()
	}
	if p.err != nil {
		return nil, fmt.Errorf("%w: app %d: %w", ErrResolve, appID, p.err)
	}
	return p, nil
}

// forget drops the route of an app the resolver no longer knows.
func (rs *routes) forget(appID int) {
	rs.mu.RLock()
	_, ok := rs.m[appID]
	rs.mu.RUnlock()
	if ok {
		rs.mu.Lock()
		delete(rs.m, appID)
		rs.mu.Unlock()
	}
}

// perApp is the endpoint name of a Dispatcher with a Resolver, whose apps
// each have their own.
const perApp = "per-app"

// endpointName names the Dispatcher's endpoint in its metrics and failure
// logs: Config.URL, redacted, or "per-app" with a Resolver (the failure
// logs carry each app's ID).
func (d *Dispatcher) endpointName() string {
	if d.static != nil {
		return d.static.target.logURL
	}
	return perApp
}

// urlsInUse returns the keys of the endpoints that a current route
// calls: Config.URL's, or those of the apps' last resolved endpoints.
// The registry keeps them however idle (see urlStates.sweep).
func (d *Dispatcher) urlsInUse() map[urlKey]bool {
	if d.routes == nil {
		return map[urlKey]bool{keyOf(d.static.url): true}
	}
	rs := d.routes
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	used := make(map[urlKey]bool, len(rs.m))
	for _, p := range rs.m {
		if p.route != nil {
			used[keyOf(p.route.url)] = true
		}
	}
	return used
}

package callback

import (
	"context"
	"net/netip"
	"time"
)

// SetClock replaces the clock that stamps d's signatures. Call it before
// the first Before or After.
func SetClock(d *Dispatcher, now func() time.Time) { d.now = now }

// RouteOf returns the prepared route of appID's calls, as an opaque value
// whose identity tells whether it was prepared again.
func RouteOf(d *Dispatcher, ctx context.Context, appID int) (any, error) {
	return d.routeOf(ctx, appID)
}

// Permits reports whether g lets a connection to addr through.
func Permits(g *SSRFGuard, addr netip.Addr) bool { return g.permits(addr) }

// MetricProviders are the MeterProviders benchmarks compare: the no-op one
// (what the global provider is until a host installs an SDK) and the real
// SDK with a reader.
var MetricProviders = providers

// DrainTimeoutOf returns the drain limit New applies for cfg.
func DrainTimeoutOf(cfg Config) time.Duration {
	s, err := cfg.validate()
	if err != nil {
		panic(err)
	}
	return s.DrainTimeout
}

// SetEndpointIdle sets how long d keeps an endpoint that no current route
// uses after its last call. Call it before the first Before or After.
func SetEndpointIdle(d *Dispatcher, idle time.Duration) { d.urls.idle = idle }

// SetHealthClock replaces the clock that times d's endpoint health (see
// HealthPolicy). Call it before the first Before or After.
func SetHealthClock(d *Dispatcher, now func() time.Time) { d.urls.health.now = now }

package callback

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
)

// observe sets up the Dispatcher's metrics and failure logs. New calls it.
// An error from the MeterProvider does not fail New, as metrics are not
// worth refusing to start for: it is logged at Warn level.
func (d *Dispatcher) observe() {
	mp := d.s.MeterProvider
	o, err := newObserver(mp, d.endpointName(), d.s.Commands, d.queueState)
	// Gauges of other parts are added here, before start.
	err = errors.Join(err, o.addGauge(mp, metricBreakerState, "{state}",
		"Circuit breaker state of each endpoint: 0 closed, 1 half-open, 2 open.",
		func(report func(int64, ...attribute.KeyValue)) {
			d.urls.states(func(url string, state gobreaker.State) {
				report(int64(state), attribute.String(attrEndpoint, url))
			})
		}))
	err = errors.Join(err, o.addGauge(mp, metricEndpointHealth, "{state}",
		"Health of each endpoint: 0 healthy, 1 failing, 2 disabled.", d.urls.healthLevels))
	err = errors.Join(err, o.start(mp))
	if err != nil {
		d.log.LogAttrs(d.life, slog.LevelWarn, "callback: metrics are incomplete", slog.String("error", err.Error()))
	}
	d.obs = o
	d.beforeLog = newFloodLog(d.log, kindBefore, "callback: before failed", d.endpointName(), d.s.LogInterval)
	d.afterLog = newFloodLog(d.log, kindAfter, "callback: after event not delivered", d.endpointName(), d.s.LogInterval)
}

// closeObservers stops reporting metrics and writes the failure summaries
// still pending. Close calls it once every delivery has ended.
func (d *Dispatcher) closeObservers(ctx context.Context) {
	d.obs.close()
	d.beforeLog.flush(ctx)
	d.afterLog.flush(ctx)
}

// beforeDone counts a Before call that began at start and returned r,
// logs the endpoint's recovery if it was failing, and returns how long the
// call took.
func (d *Dispatcher) beforeDone(ctx context.Context, c *commandStats, start time.Time, r Response) time.Duration {
	took := c.endBefore(ctx, start, r)
	if r.Err == nil {
		d.beforeLog.ok(ctx)
	}
	return took
}

// deliveryDone counts an After event whose delivery ended with err, and
// logs the endpoint's recovery if it was failing.
func (d *Dispatcher) deliveryDone(c *commandStats, err error) {
	c.ended(err)
	if err == nil {
		d.afterLog.ok(d.life)
	}
}

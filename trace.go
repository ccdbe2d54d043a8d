package callback

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the Dispatcher's spans.
const tracerName = "github.com/imcallback/callback"

// Span names: fixed, so that naming a span allocates nothing; the command
// is an attribute.
const (
	spanBefore     = "callback.before"
	spanAfter      = "callback.after"
	spanDeadLetter = "callback.dead_letter"
)

// Attributes of the spans beyond OpenTelemetry's HTTP client conventions
// (http.request.method, server.address, server.port, url.full,
// http.response.status_code, error.type).
const (
	attrTraceApp     = "imcallback.app_id"
	attrTraceCommand = "imcallback.command"
	attrTraceEvent   = "imcallback.event_id"
	attrTraceOutcome = "imcallback.outcome"
	attrTraceAttempt = "imcallback.attempt"
)

// clientSpan starts every span as an HTTP client's; made once, so that
// starting a span allocates no options.
var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// tracing holds the Dispatcher's tracer and propagator, both resolved by
// Config.validate (nil fields: OpenTelemetry's globals).
type tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	global bool // the provider is OpenTelemetry's global one
}

// pristineTracers is OpenTelemetry's global TracerProvider as it is
// before an SDK is installed: a no-op whose spans only carry their
// parent's context, yet cost three allocations each. While it is still
// the global one, the Dispatcher makes no span at all, which nobody can
// tell apart (the trace context is still sent).
var pristineTracers = otel.GetTracerProvider()

func newTracing(s *settings) tracing {
	return tracing{
		tracer: s.TracerProvider.Tracer(tracerName), prop: s.Propagator,
		global: s.TracerProvider == pristineTracers,
	}
}

// off reports whether spans would be no-ops: the global provider is used
// and no SDK has been installed.
func (t *tracing) off() bool {
	return t.global && otel.GetTracerProvider() == pristineTracers
}

// startBefore starts the client span of a Before call, a child of the span
// in ctx. With a no-op provider it costs the span's context and nothing
// else: attributes are set only on a recording span.
func (t *tracing) startBefore(ctx context.Context, r *route, appID int, command string) (context.Context, trace.Span) {
	if t.off() {
		return ctx, nil
	}
	ctx, span := t.tracer.Start(ctx, spanBefore, clientSpan...)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int(attrTraceApp, appID), attribute.String(attrTraceCommand, command))
		setTarget(span, r)
	}
	return ctx, span
}

// endBefore ends a Before call's span with its outcome and, for a failure,
// an error status.
func endBefore(span trace.Span, resp Response) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		out := beforeOutcomes[beforeOutcome(resp)]
		span.SetAttributes(attribute.String(attrTraceOutcome, string(out)))
		endStatus(span, resp.Err)
	}
	span.End()
}

// setTarget sets the HTTP client attributes of the endpoint: the URL
// without query or credentials (the route's log URL), its host and port.
func setTarget(span trace.Span, r *route) {
	if r == nil {
		return
	}
	t := &r.target
	host, port := t.base.Hostname(), t.base.Port()
	n, err := strconv.Atoi(port)
	if err != nil {
		n = 80
		if t.base.Scheme == "https" {
			n = 443
		}
	}
	span.SetAttributes(
		attribute.String("http.request.method", http.MethodPost),
		attribute.String("url.full", t.logURL),
		attribute.String("server.address", host),
		attribute.Int("server.port", n),
	)
}

// endStatus sets an error status and error.type for err, if not nil.
func endStatus(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	typ := "callback"
	if s := statusOf(err); s != 0 {
		typ = strconv.Itoa(s)
	}
	span.SetAttributes(attribute.String("error.type", typ))
}

// traceResponse records the answer's status on ctx's span; Before and
// each After attempt call it once the headers are in.
func traceResponse(ctx context.Context, res *http.Response) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", res.StatusCode))
	}
}

// inject writes ctx's trace context onto a request's headers.
func (t *tracing) inject(ctx context.Context, h http.Header) {
	t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// carry returns ctx's trace context for an After event (Event.Trace), nil
// when ctx holds no span context.
func (t *tracing) carry(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	m := make(map[string]string, 2)
	t.prop.Inject(ctx, propagation.MapCarrier(m))
	if len(m) == 0 {
		return nil
	}
	return m
}

// eventContext returns ctx with the trace context ev carries, the parent
// of the spans of its attempts.
func (t *tracing) eventContext(ctx context.Context, ev *Event) context.Context {
	if len(ev.Trace) == 0 {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.MapCarrier(ev.Trace))
}

// startAttempt starts the span of one After delivery attempt, in the trace
// of After's caller (ev.Trace).
func (t *tracing) startAttempt(ctx context.Context, ev *Event, r *route) (context.Context, trace.Span) {
	if t.off() {
		return t.eventContext(ctx, ev), nil // the requests still carry the trace
	}
	ctx, span := t.tracer.Start(t.eventContext(ctx, ev), spanAfter, clientSpan...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.Int(attrTraceApp, ev.AppID),
			attribute.String(attrTraceCommand, ev.Command),
			attribute.String(attrTraceEvent, ev.ID),
			attribute.Int(attrTraceAttempt, ev.Attempts),
		)
		setTarget(span, r)
	}
	return ctx, span
}

// endAttempt ends an attempt's span with its outcome (the attempt log's)
// and, for a failure, an error status.
func endAttempt(span trace.Span, out Outcome, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String(attrTraceOutcome, string(out)))
		endStatus(span, err)
	}
	span.End()
}

// deadLettered records a dead letter in the event's trace: a span of no
// length, with the reason as its error status.
func (t *tracing) deadLettered(ev *Event, err error) {
	if t.off() {
		return
	}
	_, span := t.tracer.Start(t.eventContext(context.Background(), ev), spanDeadLetter)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.Int(attrTraceApp, ev.AppID),
			attribute.String(attrTraceCommand, ev.Command),
			attribute.String(attrTraceEvent, ev.ID),
			attribute.Int(attrTraceAttempt, ev.Attempts),
		)
		endStatus(span, err)
	}
	span.End()
}

// traceIDOf returns the trace id of ctx's span, zero when there is none.
func traceIDOf(ctx context.Context) trace.TraceID {
	return trace.SpanContextFromContext(ctx).TraceID()
}

// TraceExtractor reads a trace context from a request's headers with an
// OpenTelemetry propagator: it is the receiver package's Propagator
// (receiver.Config.Propagator), which cannot name OpenTelemetry's types
// itself, so that an App backend's handlers continue the IM server's
// trace. The zero value uses otel.GetTextMapPropagator() at each call.
type TraceExtractor struct {
	// Propagator reads the headers; nil means otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator
}

// Extract returns ctx with the trace context of header.
func (e TraceExtractor) Extract(ctx context.Context, header http.Header) context.Context {
	p := e.Propagator
	if p == nil {
		p = otel.GetTextMapPropagator()
	}
	return p.Extract(ctx, propagation.HeaderCarrier(header))
}

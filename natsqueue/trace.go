package natsqueue

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/imcallback/callback"
)

// traceReplay records the replay of a dead letter in the event's trace
// (Event.Trace, from After's caller), as a span "callback.replay" of no
// length, a child of After's caller's span and linked to the span in ctx
// (the replay's caller, e.g. the inspector's request). It uses
// OpenTelemetry's global TracerProvider and propagator (otel.SetTracerProvider,
// otel.SetTextMapPropagator), falling back to the W3C trace context to
// read the event's; it does nothing for an event without a trace.
func traceReplay(ctx context.Context, ev *callback.Event, deadSeq uint64) {
	if len(ev.Trace) == 0 {
		return
	}
	carrier := propagation.MapCarrier(ev.Trace)
	parent := otel.GetTextMapPropagator().Extract(context.Background(), carrier)
	if !trace.SpanContextFromContext(parent).IsValid() {
		parent = propagation.TraceContext{}.Extract(context.Background(), carrier)
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(
		attribute.Int("imcallback.app_id", ev.AppID),
		attribute.String("imcallback.command", ev.Command),
		attribute.String("imcallback.event_id", ev.ID),
		attribute.String("imcallback.dead_letter_seq", strconv.FormatUint(deadSeq, 10)),
	)}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	_, span := otel.GetTracerProvider().Tracer("github.com/imcallback/callback/natsqueue").Start(parent, "callback.replay", opts...)
	span.End()
}

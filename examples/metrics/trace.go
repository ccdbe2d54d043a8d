package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracedMessage sends one message inside an IM request's span: a Before
// the App allows and an After it answers with a 503 first, so the trace
// has a retried attempt. It waits for the spans and prints the trace as a
// tree.
func tracedMessage(ctx context.Context, out io.Writer, dm *demo) error {
	ctx, span := dm.tp.Tracer("example/im").Start(ctx, "im.message.send", trace.WithSpanKind(trace.SpanKindServer))
	dm.d.Before(ctx, 10000, "message.send.before", msg("hello"))
	err := dm.d.After(ctx, 10000, "message.send.after", msg("busy"))
	span.End()
	if err != nil {
		return err
	}
	id := span.SpanContext().TraceID()
	// The IM request, Before, two After attempts and three App handlers.
	const want = 7
	deadline := time.Now().Add(10 * time.Second)
	for len(dm.ended.of(id)) < want {
		if time.Now().After(deadline) {
			return errors.New("the traced message's spans did not all end within 10 s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	fmt.Fprintf(out, "Trace %s:\n", id)
	printTree(out, dm.ended.of(id), span.SpanContext().SpanID(), 1)
	return nil
}

// printTree prints the spans under parent, in start order, indented by
// depth.
func printTree(out io.Writer, spans []sdktrace.ReadOnlySpan, parent trace.SpanID, depth int) {
	for _, s := range spans {
		if s.SpanContext().SpanID() == parent && depth == 1 {
			fmt.Fprintf(out, "  %s\n", describe(s))
		}
	}
	for _, s := range spans {
		if s.Parent().SpanID() != parent {
			continue
		}
		fmt.Fprintf(out, "%s%s\n", strings.Repeat("  ", depth+1), describe(s))
		printTree(out, spans, s.SpanContext().SpanID(), depth+1)
	}
}

// describe names a span with the attributes worth a glance.
func describe(s sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	b.WriteString(s.Name())
	for _, kv := range s.Attributes() {
		switch kv.Key {
		case "imcallback.command", "imcallback.attempt", "imcallback.outcome", "http.response.status_code":
			fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.String())
		}
	}
	if s.Status().Code.String() == "Error" {
		b.WriteString(" [error]")
	}
	return b.String()
}

// endedSpans is a span processor that keeps the spans that ended.
type endedSpans struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (e *endedSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (e *endedSpans) Shutdown(context.Context) error                  { return nil }
func (e *endedSpans) ForceFlush(context.Context) error                { return nil }

func (e *endedSpans) OnEnd(s sdktrace.ReadOnlySpan) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.spans = append(e.spans, s)
}

// of returns the ended spans of trace id, in start order.
func (e *endedSpans) of(id trace.TraceID) []sdktrace.ReadOnlySpan {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []sdktrace.ReadOnlySpan
	for _, s := range e.spans {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return out
}

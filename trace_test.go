package callback_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/imcallback/callback"
)

// newTracer returns a provider whose ended spans the recorder keeps.
func newTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

// spansNamed returns the ended spans called name.
func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attrOf(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// traceOfHeader reads the trace id of a request's traceparent.
func traceOfHeader(h http.Header) trace.TraceID {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(h))
	return trace.SpanContextFromContext(ctx).TraceID()
}

func TestBeforeSpanIsChildOfCallerAndSendsTraceparent(t *testing.T) {
	tp, rec := newTracer(t)
	b := newBackend(t, answerJSON(200, `{"code":403,"msg":"no"}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/cb?token=secret", TracerProvider: tp, Propagator: propagation.TraceContext{}})

	ctx, parent := tp.Tracer("im").Start(context.Background(), "message.send")
	r := d.Before(ctx, 7, "message.send.before", []byte(`{}`))
	parent.End()
	require.Equal(t, callback.Deny, r.Action)

	got := b.requests()
	require.Len(t, got, 1)
	require.Equal(t, parent.SpanContext().TraceID(), traceOfHeader(got[0].Header))

	spans := spansNamed(rec, "callback.before")
	require.Len(t, spans, 1)
	s := spans[0]
	require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID())
	require.Equal(t, trace.SpanKindClient, s.SpanKind())
	require.Equal(t, "POST", attrOf(s, "http.request.method").AsString())
	require.Equal(t, b.URL+"/cb", attrOf(s, "url.full").AsString(), "no query")
	require.Equal(t, "127.0.0.1", attrOf(s, "server.address").AsString())
	require.NotZero(t, attrOf(s, "server.port").AsInt64())
	require.EqualValues(t, 200, attrOf(s, "http.response.status_code").AsInt64())
	require.EqualValues(t, 7, attrOf(s, "imcallback.app_id").AsInt64())
	require.Equal(t, "message.send.before", attrOf(s, "imcallback.command").AsString())
	require.Equal(t, "denied", attrOf(s, "imcallback.outcome").AsString())
	require.Equal(t, codes.Unset, s.Status().Code)
}

func TestBeforeSpanErrorStatusOnFailure(t *testing.T) {
	tp, rec := newTracer(t)
	b := newBackend(t, answerJSON(500, `{}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, TracerProvider: tp, Propagator: propagation.TraceContext{}})
	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	require.Error(t, r.Err)
	spans := spansNamed(rec, "callback.before")
	require.Len(t, spans, 1)
	require.Equal(t, codes.Error, spans[0].Status().Code)
	require.Equal(t, "failed-open", attrOf(spans[0], "imcallback.outcome").AsString())
	require.EqualValues(t, 500, attrOf(spans[0], "http.response.status_code").AsInt64())
	require.Equal(t, "500", attrOf(spans[0], "error.type").AsString())
}

// TestTracingNilFieldsUseGlobals sets OpenTelemetry's globals and leaves
// Config's fields nil.
func TestTracingNilFieldsUseGlobals(t *testing.T) {
	tp, rec := newTracer(t)
	oldTP, oldProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(oldTP)
		otel.SetTextMapPropagator(oldProp)
	})
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	ctx, parent := tp.Tracer("im").Start(context.Background(), "message.send")
	d.Before(ctx, 1, "message.send.before", []byte(`{}`))
	parent.End()
	require.Equal(t, parent.SpanContext().TraceID(), traceOfHeader(b.requests()[0].Header))
	require.Len(t, spansNamed(rec, "callback.before"), 1)
}

func TestAfterAttemptsInCallersTrace(t *testing.T) {
	tp, rec := newTracer(t)
	var n atomic.Int32
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		answerJSON(200, `{"code":200}`)(w, r)
	})
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, TracerProvider: tp, Propagator: propagation.TraceContext{},
		RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})

	ctx, parent := tp.Tracer("im").Start(context.Background(), "message.send")
	require.NoError(t, d.After(ctx, 3, "message.send.after", []byte(`{}`)))
	parent.End()
	require.Eventually(t, func() bool { return len(spansNamed(rec, "callback.after")) == 2 }, 30*time.Second, 5*time.Millisecond)

	for _, r := range b.requests() {
		require.Equal(t, parent.SpanContext().TraceID(), traceOfHeader(r.Header))
	}
	spans := spansNamed(rec, "callback.after")
	require.Len(t, spans, 2)
	for i, s := range spans {
		require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID())
		require.EqualValues(t, i+1, attrOf(s, "imcallback.attempt").AsInt64())
	}
	require.Equal(t, codes.Error, spans[0].Status().Code)
	require.Equal(t, "retrying", attrOf(spans[0], "imcallback.outcome").AsString())
	require.Equal(t, codes.Unset, spans[1].Status().Code)
	require.Equal(t, "delivered", attrOf(spans[1], "imcallback.outcome").AsString())
}

func TestAfterDeadLetterInTrace(t *testing.T) {
	tp, rec := newTracer(t)
	b := newBackend(t, answerJSON(400, `{}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, TracerProvider: tp, Propagator: propagation.TraceContext{}})
	ctx, parent := tp.Tracer("im").Start(context.Background(), "message.send")
	require.NoError(t, d.After(ctx, 3, "message.send.after", []byte(`{}`)))
	parent.End()
	require.Eventually(t, func() bool { return len(spansNamed(rec, "callback.dead_letter")) == 1 }, 30*time.Second, 5*time.Millisecond)
	s := spansNamed(rec, "callback.dead_letter")[0]
	require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
	require.Equal(t, codes.Error, s.Status().Code)
}

// BenchmarkBeforeTraced is BenchmarkBefore with the OpenTelemetry SDK
// sampling every span (a batch-less processor that drops them) and
// propagation.TraceContext, inside a parent span: the cost of tracing a
// Before call.
func BenchmarkBeforeTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	d := newBenchDispatcher(b, callback.Config{URL: newBenchBackend(b).URL + "/callback",
		TracerProvider: tp, Propagator: propagation.TraceContext{}})
	ctx, parent := tp.Tracer("im").Start(context.Background(), "message.send")
	defer parent.End()
	b.ReportAllocs()
	for b.Loop() {
		if r := d.Before(ctx, 10000, "message.send.before", benchBody); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

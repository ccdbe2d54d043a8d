package natsqueue_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// The event's trace context travels in the message's headers: the node
// that hands it out (here the same process, which keeps nothing else of
// it) makes each attempt a span of After's caller's trace and sends its
// traceparent.
func TestTraceContextSurvivesTheQueue(t *testing.T) {
	var mu sync.Mutex
	var traces []trace.TraceID
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		mu.Lock()
		traces = append(traces, trace.SpanContextFromContext(ctx).TraceID())
		first := len(traces) == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"code":200,"msg":"ok"}`))
	}))
	defer app.Close()

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := natsqueue.Embedded(ctx, t.TempDir(), natsqueue.Options{})
	require.NoError(t, err)
	d, err := callback.New(callback.Config{
		URL: app.URL, Queue: q.ForDispatcher(), Logger: quiet, RetrySchedule: []time.Duration{time.Millisecond},
		TracerProvider: tp, Propagator: propagation.TraceContext{},
	})
	require.NoError(t, err)
	defer d.Close(ctx)

	pctx, parent := tp.Tracer("im").Start(ctx, "message.send")
	require.NoError(t, d.After(pctx, 1, "message.send.after", []byte(`{}`)))
	parent.End()
	want := parent.SpanContext().TraceID()

	attempts := func() []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == "callback.after" {
				out = append(out, s)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(attempts()) == 2 }, 30*time.Second, 10*time.Millisecond)
	spans := attempts()
	for _, s := range spans {
		require.Equal(t, want, s.SpanContext().TraceID())
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID())
	}
	require.Equal(t, codes.Error, spans[0].Status().Code)
	require.Equal(t, codes.Unset, spans[1].Status().Code)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []trace.TraceID{want, want}, traces)
}

// A replayed dead letter shows in the event's trace: a callback.replay
// span, then the replayed attempt, both children of After's caller's span.
func TestReplayInTrace(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusBadRequest) // dead-lettered at once
			return
		}
		_, _ = w.Write([]byte(`{"code":200,"msg":"ok"}`))
	}))
	defer app.Close()

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	old := otel.GetTracerProvider()
	otel.SetTracerProvider(tp) // the replay's span uses the global provider
	defer otel.SetTracerProvider(old)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := natsqueue.Embedded(ctx, t.TempDir(), natsqueue.Options{})
	require.NoError(t, err)
	d, err := callback.New(callback.Config{
		URL: app.URL, Queue: q.ForDispatcher(), Logger: quiet,
		TracerProvider: tp, Propagator: propagation.TraceContext{},
	})
	require.NoError(t, err)
	defer d.Close(ctx)

	pctx, parent := tp.Tracer("im").Start(ctx, "message.send")
	require.NoError(t, callbackAfter(callback.WithEventID(pctx, "ev-1"), d))
	parent.End()
	named := func(name string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == name {
				out = append(out, s)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(named("callback.dead_letter")) == 1 }, 30*time.Second, 10*time.Millisecond)
	fail.Store(false)
	require.Eventually(t, func() bool { return q.ReplayOne(ctx, 1, "ev-1") == nil }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return len(named("callback.after")) == 2 }, 30*time.Second, 10*time.Millisecond)

	replays := named("callback.replay")
	require.Len(t, replays, 1)
	for _, s := range append(replays, named("callback.after")...) {
		require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID(), s.Name())
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), s.Name())
	}
}

func callbackAfter(ctx context.Context, d *callback.Dispatcher) error {
	return d.After(ctx, 1, "message.send.after", []byte(`{}`))
}

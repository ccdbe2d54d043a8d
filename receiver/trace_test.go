package receiver_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
)

// A handler's ctx holds the sender's span context, for Before and After,
// through callback.TraceExtractor (an OpenTelemetry propagator, with no
// adapter of the App backend's own).
func TestHandlerSeesSendersTrace(t *testing.T) {
	prop := propagation.TraceContext{}
	var mu sync.Mutex
	var seen []trace.SpanContext
	h, err := receiver.New(receiver.Config{Propagator: callback.TraceExtractor{Propagator: prop}})
	require.NoError(t, err)
	h.Handle("message.send", func(ctx context.Context, _ *receiver.Request) (receiver.Decision, error) {
		mu.Lock()
		seen = append(seen, trace.SpanContextFromContext(ctx))
		mu.Unlock()
		return receiver.Allow(), nil
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	d := newDispatcher(t, callback.Config{URL: srv.URL, TracerProvider: tp, Propagator: prop})
	ctx, parent := tp.Tracer("im").Start(context.Background(), "message.send")
	defer parent.End()

	require.NoError(t, d.Before(ctx, 1, "message.send", []byte(`{}`)).Err)
	require.NoError(t, d.After(ctx, 1, "message.send", []byte(`{}`)))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 2
	}, 30*time.Second, 5*time.Millisecond)
	for _, sc := range seen {
		require.True(t, sc.IsRemote())
		require.Equal(t, parent.SpanContext().TraceID(), sc.TraceID())
	}
}

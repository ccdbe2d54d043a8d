package inspector_test

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

// The page shows each record's trace id, linked with Options.TraceURL.
func TestPageLinksTraceID(t *testing.T) {
	a := newApp(t, always(200))
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	d := newDispatcher(t, callback.Config{URL: a.URL, TracerProvider: tp})
	ctx, parent := tp.Tracer("im").Start(context.Background(), "message.send")
	d.Before(ctx, 1, "message.send.before", []byte(`{}`))
	parent.End()
	id := parent.SpanContext().TraceID().String()

	srv := httptest.NewServer(inspector.New(d, inspector.Options{TraceURL: "http://jaeger.test/trace/{trace_id}"}))
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL + "/")
	require.NoError(t, err)
	defer res.Body.Close()
	page, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Contains(t, string(page), `<a href="http://jaeger.test/trace/`+id+`"><code>`+id+`</code></a>`)
}

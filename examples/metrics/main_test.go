package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRun runs the example as `go run ./examples/metrics` does and checks
// that its own /metrics showed the traffic it drove.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, io.Discard, "127.0.0.1:0", "127.0.0.1:0", false))
	got := out.String()
	for _, want := range []string{
		"Stats: before allowed=14 denied=4 failed_open=2 failed_closed=1; after queued=10 delivered=10 retried=3 dead_lettered=0",
		`outcome="allowed"} 14`,
		`outcome="denied"} 4`,
		`command="friend.add.before"`,
		`outcome="retried"} 3`,
		"imcallback_queue_depth{",
		"imcallback_request_duration_seconds_count{",
		// The traced message: one trace from the IM request to the App.
		"\n  im.message.send\n    callback.before imcallback.command=message.send.before http.response.status_code=200 imcallback.outcome=allowed\n      app.callback\n",
		"callback.after imcallback.command=message.send.after imcallback.attempt=1 http.response.status_code=503 imcallback.outcome=retrying [error]\n      app.callback\n",
		"callback.after imcallback.command=message.send.after imcallback.attempt=2 http.response.status_code=200 imcallback.outcome=delivered\n      app.callback\n",
	} {
		assert.True(t, strings.Contains(got, want), "output lacks %q:\n%s", want, got)
	}
}

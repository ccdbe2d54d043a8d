package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFloodLogSequence steps a floodLog through a failure run on a fake
// clock and checks every line it writes.
func TestFloodLogSequence(t *testing.T) {
	var buf bytes.Buffer
	l := newFloodLog(slog.New(slog.NewJSONHandler(&buf, nil)), kindBefore, "callback: before failed", "http://app/cb", 10*time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	ctx := context.Background()
	fail := func(cause string) {
		l.fail(ctx, failure{appID: 7, command: "message.send.before", webhookID: "msg_1", elapsed: time.Millisecond, err: errors.New(cause)})
	}
	lines := func() []map[string]any {
		var out []map[string]any
		for _, b := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
			if len(b) == 0 {
				continue
			}
			var m map[string]any
			require.NoError(t, json.Unmarshal(b, &m))
			out = append(out, m)
		}
		buf.Reset()
		return out
	}

	steps := []struct {
		name    string
		do      func()
		advance time.Duration // before do
		want    []map[string]any
	}{
		{"a success while healthy logs nothing", func() { l.ok(ctx) }, 0, nil},
		{"the first failure is logged at once", func() { fail("refused") }, 0, []map[string]any{
			{"level": "ERROR", "msg": "callback: before failed", "app_id": 7.0, "command": "message.send.before",
				"url": "http://app/cb", "webhook_id": "msg_1", "elapsed": 1e6, "fail_closed": false, "error": "refused", "failures": 1.0},
		}},
		{"failures within the interval are counted", func() { fail("refused"); fail("timeout") }, 3 * time.Second, nil},
		{"the failure past the interval writes the summary", func() { fail("reset") }, 7 * time.Second, []map[string]any{
			{"level": "ERROR", "msg": "callback: before failures continue", "app_id": 7.0, "command": "message.send.before",
				"url": "http://app/cb", "webhook_id": "msg_1", "elapsed": 1e6, "fail_closed": false, "error": "reset", "failures": 3.0,
				"failing_for": 10e9},
		}},
		{"more failures are pending", func() { fail("timeout"); fail("timeout") }, time.Second, nil},
		{"a success soon after a failure is no recovery", func() { l.ok(ctx) }, 9 * time.Second, nil},
		{"a success an interval after the last failure logs the recovery", func() { l.ok(ctx) }, time.Second, []map[string]any{
			{"level": "INFO", "msg": "callback: before recovered", "url": "http://app/cb", "failures": 2.0,
				"total_failures": 6.0, "failing_for": 11e9, "error": "timeout"},
		}},
		{"a second success logs nothing", func() { l.ok(ctx) }, 0, nil},
		{"a new run starts with a full line", func() { fail("refused") }, time.Minute, []map[string]any{
			{"level": "ERROR", "msg": "callback: before failed", "app_id": 7.0, "command": "message.send.before",
				"url": "http://app/cb", "webhook_id": "msg_1", "elapsed": 1e6, "fail_closed": false, "error": "refused", "failures": 1.0},
		}},
		{"flush with nothing pending logs nothing", func() { l.flush(ctx) }, 0, nil},
		{"flush writes what is pending", func() { fail("refused"); l.flush(ctx) }, time.Second, []map[string]any{
			{"level": "ERROR", "msg": "callback: before failures continue", "app_id": 7.0, "command": "message.send.before",
				"url": "http://app/cb", "webhook_id": "msg_1", "elapsed": 1e6, "fail_closed": false, "error": "refused", "failures": 1.0,
				"failing_for": 1e9},
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			now = now.Add(st.advance)
			st.do()
			got := lines()
			require.Len(t, got, len(st.want), "lines: %v", got)
			for i := range got {
				delete(got[i], "time")
				assert.Equal(t, st.want[i], got[i])
			}
		})
	}
}

package callback_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// logLine is one JSON log line, with the keys the tests read.
type logLine struct {
	Level         string `json:"level"`
	Msg           string `json:"msg"`
	URL           string `json:"url"`
	Command       string `json:"command"`
	Error         string `json:"error"`
	Failures      int    `json:"failures"`
	TotalFailures int    `json:"total_failures"`
}

func parseLog(t *testing.T, log string) []logLine {
	t.Helper()
	var lines []logLine
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var l logLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "log line %q", sc.Text())
		lines = append(lines, l)
	}
	return lines
}

// TestFailureLogFlood drives 10,000 Before failures (and 2,000 dead letters)
// of an endpoint and checks that
// the log holds a few lines that still account for every failure: the first
// at once, one summary per interval, the recovery.
func TestFailureLogFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("a flood of 12,000 failures: not in -short")
	}
	const (
		interval = 100 * time.Millisecond
		callers  = 8
	)
	tests := []struct {
		kind       string
		failures   int
		failMsg    string
		send       func(d *callback.Dispatcher, i int)
		waitFailed func(d *callback.Dispatcher, n int) bool
	}{
		{
			kind:     "before",
			failures: 10000,
			failMsg:  "callback: before failed",
			send: func(d *callback.Dispatcher, i int) {
				d.Before(context.Background(), i, "message.send.before", []byte(`{"text":"do-not-log-me"}`))
			},
			waitFailed: func(d *callback.Dispatcher, n int) bool { return d.Stats().Total.FailedOpen == uint64(n) },
		},
		{
			kind:     "after",
			failures: 2000, // the after path is the same code; fewer keep the suite fast
			failMsg:  "callback: after event not delivered",
			send: func(d *callback.Dispatcher, i int) {
				for d.After(context.Background(), i, "message.send.after", []byte(`{"text":"do-not-log-me"}`)) != nil {
					time.Sleep(time.Millisecond) // queue full: wait for the workers
				}
			},
			waitFailed: func(d *callback.Dispatcher, n int) bool { return d.Stats().Total.DeadLettered == uint64(n) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			failures := tt.failures
			var down atomic.Bool
			down.Store(true)
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				if down.Load() {
					w.WriteHeader(http.StatusBadRequest) // not retried: one attempt per After event
					return
				}
				answerJSON(200, `{"code":200}`)(w, r)
			})
			d, logs := newDispatcher(t, callback.Config{URL: b.URL + "/cb?sig=secret", LogInterval: interval, Retries: -1})

			start := time.Now()
			var wg sync.WaitGroup
			for c := range callers {
				wg.Go(func() {
					for i := c; i < failures; i += callers {
						tt.send(d, i)
					}
				})
			}
			wg.Wait()
			require.Eventually(t, func() bool { return tt.waitFailed(d, failures) }, 30*time.Second, time.Millisecond, "all %d must fail", failures)
			elapsed := time.Since(start)
			down.Store(false)
			// The recovery is logged by the first success an interval
			// after the last failure.
			require.Eventually(t, func() bool {
				tt.send(d, 0)
				return strings.Contains(logs.String(), "recovered")
			}, 30*time.Second, 10*time.Millisecond, "the recovery must be logged")

			lines := parseLog(t, logs.String())
			require.NotEmpty(t, lines)
			bound := 2 + int(elapsed/interval) + 1 // first, recovery, a summary per interval (+1 for rounding)
			assert.LessOrEqual(t, len(lines), bound, "got %d lines in %v, want at most %d", len(lines), elapsed, bound)
			t.Logf("%d failures in %v logged in %d lines", failures, elapsed, len(lines))

			first, last := lines[0], lines[len(lines)-1]
			assert.Equal(t, tt.failMsg, first.Msg, "the first failure is logged at once")
			assert.Equal(t, 1, first.Failures)
			assert.Equal(t, "message.send."+tt.kind, first.Command)
			assert.Contains(t, first.Error, "400")
			assert.Equal(t, "callback: "+tt.kind+" recovered", last.Msg, "the recovery is logged")
			assert.Equal(t, "INFO", last.Level)
			assert.Equal(t, failures, last.TotalFailures, "the recovery line counts the whole run")
			sum := 0
			for _, l := range lines {
				sum += l.Failures
				assert.Equal(t, b.URL+"/cb", l.URL, "url without its query")
				if l.Msg != last.Msg {
					assert.Equal(t, "ERROR", l.Level)
				}
				if l.Msg != first.Msg && l.Msg != last.Msg {
					assert.Equal(t, "callback: "+tt.kind+" failures continue", l.Msg)
					assert.Contains(t, l.Error, "400", "a summary carries the last cause")
				}
			}
			assert.Equal(t, failures, sum, "the lines' failures must add up to every failure")
			assert.NotContains(t, logs.String(), "do-not-log-me")
			assert.NotContains(t, logs.String(), "secret")
		})
	}
}

func TestFailureLogEveryLineWhenIntervalNegative(t *testing.T) {
	d, logs := newDispatcher(t, callback.Config{URL: "http://127.0.0.1:1/cb", LogInterval: -1, Breaker: noBreaker})
	for range 5 {
		d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	}
	lines := parseLog(t, logs.String())
	require.Len(t, lines, 5, "a negative LogInterval logs every failure")
	for _, l := range lines {
		assert.Equal(t, "callback: before failed", l.Msg)
		assert.Equal(t, 1, l.Failures)
	}
}

func TestFailureLogFlushedByClose(t *testing.T) {
	d, logs := newDispatcher(t, callback.Config{URL: "http://127.0.0.1:1/cb", LogInterval: time.Hour, Breaker: noBreaker})
	for range 50 {
		d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	}
	require.Len(t, parseLog(t, logs.String()), 1, "within the interval only the first failure is logged")
	require.NoError(t, d.Close(context.Background()))
	lines := parseLog(t, logs.String())
	require.Len(t, lines, 2, "Close writes the pending summary")
	assert.Equal(t, "callback: before failures continue", lines[1].Msg)
	assert.Equal(t, 49, lines[1].Failures, "got %d, want the 49 failures not yet logged", lines[1].Failures)
	assert.Contains(t, lines[1].Error, "refused")
}

func TestFailureLogFlappingEndpointIsSummarised(t *testing.T) {
	var n atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		answerJSON(200, `{"code":200}`)(w, r)
	})
	d, logs := newDispatcher(t, callback.Config{URL: b.URL, LogInterval: time.Hour, Breaker: noBreaker})
	for range 1000 {
		d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	}
	require.Equal(t, uint64(500), d.Stats().Total.FailedOpen)
	require.Len(t, parseLog(t, logs.String()), 1, "failures between successes are one run: only its first is logged at once")
	require.NoError(t, d.Close(context.Background()))
	lines := parseLog(t, logs.String())
	require.Len(t, lines, 2)
	assert.Equal(t, 500, lines[0].Failures+lines[1].Failures, "the lines account for all 500 failures")
}

// noBreaker keeps the endpoint's circuit breaker out of tests of the log
// itself: an open breaker refuses calls and logs its own state changes.
var noBreaker = callback.Breaker{Disabled: true}

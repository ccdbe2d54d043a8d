package main

import (
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
)

func TestSendJSON(t *testing.T) {
	secret := callbacktest.NewSecret()
	srv := callbacktest.NewServer(t, callbacktest.Config{Secret: secret})
	srv.On("json.deny", callbacktest.Deny(40001, "banned"))

	r := cli(t, "", "send", "--url", srv.URL, "--secret", secret, "--body", `{}`, "--json")
	require.Equal(t, exitAllow, r.code, r.stderr)
	var j map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &j), r.stdout)
	assert.Equal(t, "allow", j["decision"])
	assert.EqualValues(t, 200, j["code"])
	assert.Equal(t, map[string]any{"code": float64(200), "msg": "success"}, j["answer"])
	assert.Contains(t, j, "latency_ms")

	r = cli(t, "", "send", "--url", srv.URL, "--secret", secret, "--command", "json.deny", "--body", `{}`, "--json")
	require.Equal(t, exitDeny, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &j), r.stdout)
	assert.Equal(t, "deny", j["decision"])
	assert.EqualValues(t, 40001, j["code"])
	assert.Equal(t, "banned", j["msg"])

	// A 401: the receiver's reason is shown, in JSON and in text.
	r = cli(t, "", "send", "--url", srv.URL, "--secret", "", "--body", `{}`, "--json")
	require.Equal(t, exitFailure, r.code)
	j = map[string]any{}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &j), r.stdout)
	assert.Equal(t, "status 401", j["cause"])
	assert.Contains(t, j["status_body"], "webhook-signature")
	assert.NotContains(t, j, "decision")

	r = cli(t, "", "send", "--url", srv.URL, "--secret", "", "--body", `{}`)
	require.Equal(t, exitFailure, r.code)
	assert.Regexp(t, `^body:     ".*webhook-signature.*\\n"\n$`, r.stdout)
	assert.Contains(t, r.stderr, "401")

	r = cli(t, "", "send", "--url", srv.URL, "--secret", secret, "--after", "--body", `{}`, "--json")
	require.Equal(t, exitAllow, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &j), r.stdout)
	assert.Equal(t, true, j["delivered"])
}

func TestSendLoadDurationRate(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	start := time.Now()
	r := cli(t, "", "send", "--url", srv.URL, "--duration", "600ms", "--rate", "50", "--concurrency", "4", "--body", "{}", "--json")
	elapsed := time.Since(start)
	require.Equal(t, exitAllow, r.code, r.stderr)
	var j loadJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &j), r.stdout)
	assert.Equal(t, "before", j.Mode)
	assert.Nil(t, j.Requested, "no --count: no limit")
	// 50/s for 0.6 s with a burst of 1 is about 31 calls; a loaded machine
	// sends fewer (the first at least), never more.
	assert.Positive(t, j.Sent)
	assert.LessOrEqual(t, j.Sent, int64(2*32))
	assert.Equal(t, j.Sent, j.Outcomes["allow"])
	assert.Len(t, srv.Calls(), int(j.Sent))
	assert.Less(t, elapsed, 30*time.Second, "--duration 600ms must end the run; only a hang takes 30 s")
	require.NotNil(t, j.Latency)
}

func TestSendLoadCauses(t *testing.T) {
	r := cli(t, "", "send", "--url", closedURL(t), "--count", "40", "--concurrency", "2", "--body", "{}")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stdout, "latency: none answered")
	assert.Regexp(t, `failures: breaker open \d+  refused \d+\n`, r.stdout)

	srv := callbacktest.NewServer(t, callbacktest.Config{})
	srv.On("slow", callbacktest.Hang())
	r = cli(t, "", "send", "--url", srv.URL, "--command", "slow", "--count", "3", "--timeout", "100ms", "--body", "{}", "--json")
	assert.Equal(t, exitFailure, r.code)
	var j loadJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &j), r.stdout)
	assert.Equal(t, map[string]int{"timeout": 3}, j.Failures)
}

func TestSendLoadAfter(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	srv.On("after.ok", callbacktest.Allow())
	r := cli(t, "", "send", "--url", srv.URL, "--after", "--command", "after.ok", "--count", "100", "--concurrency", "4", "--body", "{}")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "queued 100 of 100 after-callbacks")
	assert.Contains(t, r.stdout, "outcomes: delivered 100  failed 0")
	assert.Len(t, srv.Calls(), 100)

	srv.On("after.gone", callbacktest.Status(410))
	r = cli(t, "", "send", "--url", srv.URL, "--after", "--command", "after.gone", "--count", "3", "--json", "--body", "{}")
	assert.Equal(t, exitFailure, r.code)
	var j loadJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &j), r.stdout)
	assert.Equal(t, "after", j.Mode)
	assert.Equal(t, map[string]int{"status 410": 3}, j.Failures)
	assert.Equal(t, int64(0), j.Outcomes["delivered"])
	assert.Equal(t, int64(3), j.Outcomes["failed"])
}

func TestCause(t *testing.T) {
	assert.Equal(t, "breaker open", cause(callback.ErrBreakerOpen))
	assert.Equal(t, "queue full", cause(callback.ErrQueueFull))
	assert.Equal(t, "", cause(nil))
}

// closedURL returns a loopback callback URL on which nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	u := "http://" + ln.Addr().String() + "/callback"
	require.NoError(t, ln.Close())
	return u
}

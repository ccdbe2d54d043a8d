package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/command"
)

func TestListenForwardRecordReplay(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.proto.String(), func(t *testing.T) {
			proto := p.proto.String()
			backendSecret := callbacktest.NewSecret()
			if p.proto == callback.Tencent {
				backendSecret = "backend-token"
			}
			backend := callbacktest.NewServer(t, callbacktest.Config{Protocol: p.proto, Secret: backendSecret})
			deny := 40001
			if p.proto == callback.Tencent {
				deny = 120001
			}
			backend.On("fwd.deny", callbacktest.Deny(deny, "from your backend"))
			rewrite := `{"text":"rewritten"}`
			if p.proto == callback.Tencent {
				rewrite = `{"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"rewritten"}}]}`
			}
			backend.On("fwd.rewrite", callbacktest.Rewrite(rewrite))
			backend.On("fwd.broken", callbacktest.Status(500))

			record := filepath.Join(t.TempDir(), "calls.jsonl")
			url, out := listening(t, "--protocol", proto, "--secret", p.secret,
				"--forward-to", backend.URL, "--forward-secret", backendSecret, "--record", record)
			send := func(command string) result {
				return cli(t, "", "send", "--url", url, "--protocol", proto, "--secret", p.secret,
					"--command", command, "--body", `{"text":"hi `+command+`"}`, "--client-ip", "203.0.113.7")
			}

			r := send("fwd.deny")
			assert.Equal(t, exitDeny, r.code, r.stdout+r.stderr)
			assert.Contains(t, r.stdout, "from your backend", "the backend's answer is relayed")
			got := backend.WaitFor(5*time.Second, callbacktest.Command("fwd.deny"))
			assert.True(t, got.Verified, "forwarded re-signed with --forward-secret")
			assert.JSONEq(t, `{"text":"hi fwd.deny"}`, string(got.Body))
			assert.NotEmpty(t, got.ID)
			waitFor(t, func() bool { return strings.Contains(out.String(), "id "+got.ID) }, "listen prints the same webhook-id it forwarded: %s", out)
			if p.proto == callback.Tencent {
				assert.Equal(t, "203.0.113.7", got.ClientIP)
			}

			r = send("fwd.rewrite")
			assert.Equal(t, exitAllow, r.code, r.stdout+r.stderr)
			assert.Contains(t, r.stdout, "rewritten")

			r = send("fwd.broken")
			assert.Equal(t, exitFailure, r.code)
			assert.Contains(t, r.stderr, "500")
			waitFor(t, func() bool { return strings.Contains(out.String(), "forward:   FAILED") }, "listen says the forward failed: %s", out)

			// A bad signature is neither forwarded nor recorded.
			bad := cli(t, "", "send", "--url", url, "--protocol", proto, "--command", "fwd.unsigned", "--body", `{}`)
			assert.Equal(t, exitFailure, bad.code)

			// Replay the record to another App backend, re-signed with its secret.
			waitFor(t, func() bool { b, _ := os.ReadFile(record); return strings.Count(string(b), "\n") == 3 }, "three callbacks recorded")
			other := callbacktest.NewServer(t, callbacktest.Config{Protocol: p.proto, Secret: p.secret})
			r = cli(t, "", "replay", "--url", other.URL, "--secret", p.secret, record)
			assert.Equal(t, exitAllow, r.code, r.stdout+r.stderr)
			assert.Contains(t, r.stdout, "replayed 3 callbacks: answered 3, failed 0")
			calls := other.Calls()
			require.Len(t, calls, 3)
			for i, cmd := range []string{"fwd.deny", "fwd.rewrite", "fwd.broken"} {
				assert.Equal(t, cmd, calls[i].Command)
				assert.True(t, calls[i].Verified)
				assert.JSONEq(t, `{"text":"hi `+cmd+`"}`, string(calls[i].Body))
			}
			assert.Equal(t, got.ID, calls[0].ID, "the recorded webhook-id is kept")
			r = cli(t, "", "replay", "--url", other.URL, "--secret", p.secret, "--new-ids", record)
			assert.Equal(t, exitAllow, r.code)
			assert.NotEqual(t, got.ID, other.Calls()[3].ID)
		})
	}
}

func TestListenJSON(t *testing.T) {
	url, out := listening(t, "--json", "--deny-pattern", "spam")
	r := cli(t, "", "send", "--url", url, "--body", `{"text":"spam \u009b"}`)
	assert.Equal(t, exitDeny, r.code)
	var c callbackJSON
	waitFor(t, func() bool { return json.Unmarshal([]byte(out.String()), &c) == nil }, "one JSON object: %q", out)
	assert.Equal(t, command.MessageSendBefore, c.Command)
	assert.Equal(t, "deny", c.Answer.Action)
	assert.Equal(t, "not checked", c.Signature)
	assert.JSONEq(t, `{"text":"spam \u009b"}`, string(c.Body))
	assert.NotContains(t, out.String(), "\u009b", "no raw control character reaches the terminal")
	assert.Equal(t, 1, strings.Count(out.String(), "\n"), "one line per callback, and no banner on stdout")
}

func TestListenQuiet(t *testing.T) {
	url, out := listening(t, "--quiet")
	for range 5 {
		require.Equal(t, exitAllow, cli(t, "", "send", "--url", url, "--body", `{}`).code)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "  5 callbacks  allow 5  deny 0") }, "a summary line: %q", out)
	assert.NotContains(t, out.String(), "body:", "no callback printed")
}

func TestReplayRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	require.NoError(t, os.WriteFile(junk, []byte("not json\n"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"replay"}, exitUsage, "give one FILE"},
		{[]string{"replay", junk}, exitFailure, "line 1: not a recorded callback"},
		{[]string{"replay", empty}, exitFailure, "holds no callback"},
		{[]string{"replay", filepath.Join(dir, "missing")}, exitFailure, "no such file"},
	} {
		r := cli(t, "", tt.args...)
		assert.Equal(t, tt.code, r.code, "%v: %s", tt.args, r.stderr)
		assert.Contains(t, r.stderr, tt.want)
	}
}

func TestReplayAfter(t *testing.T) {
	record := filepath.Join(t.TempDir(), "calls.jsonl")
	lines := `{"protocol":"tencent","app":7,"command":"State.StateChange","id":"evt-1","body":{"Info":{"Action":"Login"}}}
{"protocol":"tencent","app":7,"command":"imcallback.check","body":{}}
{"protocol":"tencent","app":7,"command":"x","rejected":"no signature","status":401}
`
	require.NoError(t, os.WriteFile(record, []byte(lines), 0o600))
	srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: callback.Tencent, Secret: "tok"})
	srv.On("State.StateChange", callbacktest.Status(503), callbacktest.Allow())
	r := cli(t, "", "replay", "--url", srv.URL, "--secret", "tok", "--after", "--retries", "1", record)
	assert.Equal(t, exitAllow, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "replayed 1 after-callbacks: delivered 1, failed 0", "the probe and the rejected line are skipped")
	calls := srv.Calls()
	require.Len(t, calls, 2, "one failed attempt, one retry")
	assert.Equal(t, 7, calls[1].AppID)
	assert.Equal(t, "evt-1", calls[1].ID)
	assert.True(t, calls[1].Verified, "the recorded protocol is used, signed with --secret")
}

func TestColour(t *testing.T) {
	var b strings.Builder
	assert.False(t, colourOn(&b), "not a file")
	t.Setenv("NO_COLOR", "1")
	assert.False(t, colourOn(os.Stdout), "NO_COLOR")
	on := painter{on: true}
	assert.Equal(t, "\x1b[31mFAIL\x1b[0m", on.paint(red, "FAIL"))
	assert.Equal(t, "FAIL", painter{}.paint(red, "FAIL"))
}

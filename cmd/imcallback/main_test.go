package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/tencent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the CLI's code with args and stdin and returns what it did.
func cli(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// protocols are the two wire formats, each with a secret of its kind.
var protocols = []struct {
	proto  callback.Protocol
	secret string
}{
	{callback.AppCommand, callbacktest.NewSecret()},
	{callback.Tencent, "tencent-token"},
	{callback.OpenIM, callbacktest.NewSecret()},
}

func TestUsageErrorsAreOneLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"trigger"}, `unknown command "trigger"`},
		{"unknown flag", []string{"send", "--bogus"}, "flag provided but not defined: -bogus"},
		{"stray argument", []string{"send", "--body", "{}", "extra"}, `unexpected argument "extra"`},
		{"bad protocol", []string{"listen", "--protocol", "xmpp"}, `unknown protocol "xmpp"`},
		{"body twice", []string{"send", "--body", "{}", "--body-file", "x.json"}, "not both"},
		{"body not JSON", []string{"send", "--body", "{nope"}, "the body is not valid JSON"},
		{"missing body file", []string{"send", "--body-file", "/nonexistent/x.json"}, "--body-file"},
		{"bad secret", []string{"send", "--body", "{}", "--secret", "not-whsec"}, "invalid config"},
		{"bad URL", []string{"send", "--body", "{}", "--url", "ftp://x"}, "scheme"},
		{"bad count", []string{"send", "--body", "{}", "--count", "0"}, "at least 1"},
		{"bad rate", []string{"send", "--body", "{}", "--rate", "-1"}, "must not be negative"},
		{"bad rewrite", []string{"listen", "--rewrite", "nothing"}, "PATTERN=REPLACEMENT"},
		{"bad pattern", []string{"listen", "--deny-pattern", "("}, "missing closing )"},
		{"bad listen secret", []string{"listen", "--secret", "whsec_!!"}, "invalid config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, "", tt.args...)
			assert.Equal(t, exitUsage, r.code, "exit status; stderr: %s", r.stderr)
			assert.Contains(t, r.stderr, tt.want)
			if tt.args != nil {
				assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "got %q, want one line", r.stderr)
			}
			assert.NotContains(t, r.stderr, "not-whsec", "secrets stay out of errors")
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}} {
		r := cli(t, "", args...)
		assert.Equal(t, exitAllow, r.code)
		for _, cmd := range []string{"listen", "send", "replay", "apps", "doctor", "secret", "--version"} {
			assert.Contains(t, r.stdout, "imcallback "+cmd)
		}
	}
	for _, cmd := range []string{"doctor", "replay", "secret"} {
		r := cli(t, "", cmd, "--help")
		assert.Equal(t, exitAllow, r.code, cmd)
		assert.Contains(t, r.stdout, "Usage: imcallback "+cmd)
	}
	send := cli(t, "", "send", "--help")
	assert.Equal(t, exitAllow, send.code)
	for _, want := range []string{"Exit status:", "3  the App denied", "4  the App dropped", "--count", "-concurrency", "-body-file"} {
		assert.Contains(t, send.stdout, want)
	}
	listen := cli(t, "", "listen", "-h")
	assert.Equal(t, exitAllow, listen.code)
	for _, want := range []string{"-deny-pattern", "-drop-pattern", "-rewrite", "-rules", "-verbose", "Rules file", "Exit status"} {
		assert.Contains(t, listen.stdout, want)
	}
}

func TestSendOutcomes(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.proto.String(), func(t *testing.T) {
			srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: p.proto, Secret: p.secret})
			deny := 40001
			wantDrop := exitDrop
			if p.proto == callback.Tencent {
				deny = 120001
			} else {
				wantDrop = exitDeny // Seed cannot express a drop
			}
			tests := []struct {
				name   string
				answer callbacktest.Answer
				code   int
				out    []string // lines the output must have
				errOut string
			}{
				{"allow", callbacktest.Allow(), exitAllow, []string{"decision: allow", "latency:"}, ""},
				{"deny", callbacktest.Deny(deny, "banned word"), exitDeny, []string{"decision: deny", "code:     " + strconv.Itoa(deny), `msg:      "banned word"`, "answer:   {", `"banned word"`}, ""},
				{"drop", callbacktest.Drop(), wantDrop, nil, ""},
				{"rewrite", callbacktest.Rewrite(`{"text":"h***"}`), exitAllow, []string{"decision: allow", "data:", `"text": "h***"`}, ""},
				{"5xx", callbacktest.Status(503), exitFailure, nil, "503"},
				{"timeout", callbacktest.Hang(), exitFailure, nil, "deadline exceeded"},
				{"garbage", callbacktest.Garbage(), exitFailure, []string{"answer:   "}, "not valid"},
			}
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cmd := "test." + strconv.Itoa(i)
					srv.On(cmd, tt.answer)
					timeout := "10s" // never reached: the answer comes first, however loaded the machine
					if tt.name == "timeout" {
						timeout = "300ms"
					}
					r := cli(t, "", "send", "--url", srv.URL, "--protocol", p.proto.String(), "--secret", p.secret,
						"--app", "77", "--command", cmd, "--body", `{"text":"hello"}`, "--timeout", timeout)
					assert.Equal(t, tt.code, r.code, "exit status; stdout: %s stderr: %s", r.stdout, r.stderr)
					for _, want := range tt.out {
						assert.Contains(t, r.stdout, want)
					}
					if tt.errOut != "" {
						assert.Contains(t, r.stderr, tt.errOut)
						assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
					}
					c := srv.WaitFor(time.Second, callbacktest.Command(cmd))
					assert.True(t, c.Verified, "send must sign with --secret")
					if p.proto == callback.OpenIM {
						assert.Equal(t, 0, c.AppID, "OpenIM carries no app")
					} else {
						assert.Equal(t, 77, c.AppID)
					}
					assert.JSONEq(t, `{"text":"hello"}`, string(c.Body))
				})
			}
		})
	}
}

func TestSendBodySourcesAndDefaults(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: callback.Tencent})
	file := filepath.Join(t.TempDir(), "event.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"from":"file"}`), 0o600))

	r := cli(t, "", "send", "--url", srv.URL, "--protocol", "tencent", "--body-file", file,
		"--client-ip", "203.0.113.9", "--platform", "Android")
	require.Equal(t, exitAllow, r.code, r.stderr)
	c := srv.WaitN(1, time.Second)[0]
	assert.JSONEq(t, `{"from":"file"}`, string(c.Body))
	assert.Equal(t, tencent.C2CBeforeSendMsg, c.Command, "tencent's default command")
	assert.Equal(t, 10000, c.AppID)
	assert.Equal(t, "203.0.113.9", c.ClientIP)
	assert.Equal(t, "Android", c.Platform)

	r = cli(t, "  {\"from\":\"stdin\"}\n", "send", "--url", srv.URL, "--protocol", "tencent")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.JSONEq(t, `{"from":"stdin"}`, string(srv.WaitN(2, time.Second)[1].Body))

	r = cli(t, `{"from":"dash"}`, "send", "--url", srv.URL, "--protocol", "tencent", "--body-file", "-", "--after")
	require.Equal(t, exitAllow, r.code, r.stderr)
	c = srv.WaitN(3, time.Second)[2]
	assert.JSONEq(t, `{"from":"dash"}`, string(c.Body))
	assert.Equal(t, tencent.C2CAfterSendMsg, c.Command, "tencent's default after-command")
	assert.Contains(t, r.stdout, "delivered: "+tencent.C2CAfterSendMsg)

	r = cli(t, "", "send", "--url", srv.URL)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "not valid JSON", "an empty standard input is no body")
}

func TestSendAfter(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	srv.On("retried.after", callbacktest.Status(503), callbacktest.Allow())
	r := cli(t, "", "send", "--url", srv.URL, "--after", "--command", "retried.after", "--retries", "2", "--body", "{}")
	assert.Equal(t, exitAllow, r.code, r.stderr)
	assert.Len(t, srv.Calls(), 2, "one failed attempt, one retry")

	srv.On("refused.after", callbacktest.Status(400))
	r = cli(t, "", "send", "--url", srv.URL, "--after", "--command", "refused.after", "--retries", "2", "--body", "{}")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "not delivered")
	assert.Contains(t, r.stderr, "400")

	r = cli(t, "", "send", "--url", "http://127.0.0.1:1/callback", "--after", "--body", "{}")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "refused")
}

func TestSendLoad(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	srv.On("load.allow", callbacktest.Allow())
	r := cli(t, "", "send", "--url", srv.URL, "--command", "load.allow", "--count", "300", "--concurrency", "8", "--body", "{}")
	assert.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "sent 300 of 300 callbacks")
	assert.Contains(t, r.stdout, "at concurrency 8")
	assert.Regexp(t, `calls/s\nlatency: p50 \S+  p99 \S+  max \S+\n`, r.stdout)
	assert.Contains(t, r.stdout, "outcomes: allow 300  deny 0  drop 0  failed 0")
	assert.Contains(t, r.stderr, "sent 300/300", "the progress line ends on the total")
	assert.Len(t, srv.Calls(), 300)

	// Some denied, some failed: the failures make the exit status 1.
	srv.On("load.mixed", callbacktest.Deny(40001, "no"), callbacktest.Deny(40001, "no"), callbacktest.Status(503))
	r = cli(t, "", "send", "--url", srv.URL, "--command", "load.mixed", "--count", "20", "--concurrency", "1", "--body", "{}")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stdout, "outcomes: allow 0  deny 2  drop 0  failed 18")
	assert.Contains(t, r.stdout, "first failure:")
	// 5 failures in a row open the breaker: the rest are refused at once, and the breakdown says so.
	assert.Regexp(t, `failures: breaker open 13  status 503 5\n`, r.stdout)
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	assert.Equal(t, time.Duration(50), percentile(d, 50))
	assert.Equal(t, time.Duration(99), percentile(d, 99))
	assert.Equal(t, time.Duration(7), percentile([]time.Duration{7}, 99))
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// listening runs "imcallback listen args..." on a free port until the test
// ends and returns its callback URL and output.
func listening(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"listen", "--addr", "127.0.0.1:0"}, args...), nil, out, errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, exitAllow, code, "listen's exit status after Ctrl-C; stderr: %s", errOut)
		case <-time.After(10 * time.Second):
			t.Error("listen did not stop")
		}
	})
	addr := regexp.MustCompile(`on (http://\S+/callback)`)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m := addr.FindStringSubmatch(out.String() + errOut.String()); m != nil {
			return m[1], out
		}
		select {
		case code := <-done:
			t.Fatalf("listen exited with %d: %s", code, errOut)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("listen printed no address: %q", out)
	return "", nil
}

func TestListenAndSend(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.proto.String(), func(t *testing.T) {
			url, out := listening(t, "--protocol", p.proto.String(), "--secret", p.secret, "--verbose",
				"--deny-pattern", "(?i)spam", "--deny-code", "40001", "--deny-msg", "no spam",
				"--drop-pattern", "psst", "--rewrite", "(?i)darn=d***")
			send := func(text string) result {
				return cli(t, "", "send", "--url", url, "--protocol", p.proto.String(), "--secret", p.secret,
					"--command", "message.send.before", "--body", `{"text":"`+text+`"}`)
			}
			wantDrop := exitDrop
			if p.proto != callback.Tencent {
				wantDrop = exitDeny // no drop in AppCommand nor OpenIM
			}
			for _, tt := range []struct {
				text   string
				code   int
				stdout string
			}{
				{"hello", exitAllow, "decision: allow"},
				{"cheap SPAM", exitDeny, `msg:      "no spam"`},
				{"psst", wantDrop, ""},
				{"Darn it", exitAllow, `"text": "d*** it"`},
			} {
				r := send(tt.text)
				assert.Equal(t, tt.code, r.code, "%q: exit status; stderr: %s", tt.text, r.stderr)
				assert.Contains(t, r.stdout, tt.stdout, "%q", tt.text)
			}

			// A wrong signature is refused with 401 and printed as such.
			wrong := callbacktest.NewSecret()
			if p.proto == callback.Tencent {
				wrong = "wrong-token"
			}
			r := cli(t, "", "send", "--url", url, "--protocol", p.proto.String(), "--secret", wrong, "--body", `{"text":"forged"}`)
			assert.Equal(t, exitFailure, r.code)
			assert.Contains(t, r.stderr, "401")

			printed := out.String()
			app := "app 10000"
			if p.proto == callback.OpenIM {
				app = "app 0" // OpenIM carries no app
			}
			for _, want := range []string{
				"message.send.before  " + app,
				"signature: valid",
				`answer:    deny 40001 "no spam"  (--deny-pattern "(?i)spam")`,
				`answer:    rewrite`,
				`"text": "Darn it"`,
				"signature INVALID: answered 401",
				"headers:",
				"Content-Type: application/json",
			} {
				assert.Contains(t, printed, want)
			}
			// --verbose prints the query of accepted requests too.
			for block := range strings.SplitSeq(printed, "\n\n") {
				if strings.Contains(block, "signature: valid") && p.proto != callback.OpenIM {
					assert.Regexp(t, `\n  query: +\S*ommand=message.send.before`, block, "an accepted request's query")
				}
			}
			assert.NotContains(t, printed, `"text": "forged"`, "a forged request's body is not printed")
		})
	}
}

func TestListenRulesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rules.json")
	require.NoError(t, os.WriteFile(file, []byte(`[
		{"command": "group.member.add.before", "match": "bot-", "action": "deny", "msg": "no bots"},
		{"match": "vip", "action": "allow"},
		{"match": "casino", "action": "drop"}
	]`), 0o600))
	url, out := listening(t, "--protocol", "tencent", "--rules", file, "--drop-pattern", "vip")
	send := func(cmd, body string) int {
		return cli(t, "", "send", "--url", url, "--protocol", "tencent", "--command", cmd, "--body", body).code
	}
	assert.Equal(t, exitDeny, send("group.member.add.before", `{"members":["bot-1"]}`))
	assert.Equal(t, exitAllow, send("message.send.before", `{"text":"bot-1"}`), "the rule is for another command")
	assert.Equal(t, exitAllow, send("message.send.before", `{"text":"vip casino"}`), "file rules come first")
	assert.Equal(t, exitDrop, send("message.send.before", `{"text":"casino"}`))
	assert.Contains(t, out.String(), `answer:    deny 120001 "no bots"  (rule 1)`)
	assert.Contains(t, out.String(), "signature: not checked (no --secret)")

	for body, want := range map[string]string{
		`{"rules": []}`:                   "cannot unmarshal",
		`[{"action": "explode"}]`:         `rule 1: action "explode"`,
		`[{"action": "deny", "code": 2}]`: "means drop",
		`[{"action": "deny", "oops": 1}]`: "unknown field",
		`[null]`:                          "rule 1 is null",
	} {
		require.NoError(t, os.WriteFile(file, []byte(body), 0o600))
		r := cli(t, "", "listen", "--protocol", "tencent", "--rules", file)
		assert.Equal(t, exitUsage, r.code, body)
		assert.Contains(t, r.stderr, want, body)
	}
}

func TestListenAddressInUse(t *testing.T) {
	url, _ := listening(t)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/callback")
	r := cli(t, "", "listen", "--addr", addr)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "address already in use")
}

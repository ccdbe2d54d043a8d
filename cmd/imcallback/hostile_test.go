package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/sqlapps/sqlite"
)

// URL credentials are never printed: not by apps set, not by apps list
// (table or --json), not by send.
func TestURLCredentialsNeverPrinted(t *testing.T) {
	db := filepath.Join(t.TempDir(), "apps.db")
	t.Setenv("IMCALLBACK_TEST_KEY", "")
	r := cli(t, "", "apps", "set", "--db", db, "--create", "--app", "1", "--url", "https://ops:hunter2@app.example/cb?x=1", "--secret", "")
	// sqlapps refuses credentials it cannot encrypt: either way, never printed.
	assert.NotContains(t, r.stdout+r.stderr, "hunter2")
	for _, u := range []string{"https://ops:hunter2@127.0.0.1:1/cb", "https://tokhunter2@127.0.0.1:1/cb"} {
		r := cli(t, "", "send", "--url", u, "--body", `{}`, "--timeout", "200ms")
		assert.Equal(t, exitFailure, r.code)
		assert.NotContains(t, r.stdout+r.stderr, "hunter2", "send")
		r = cli(t, "", "send", "--url", u, "--body", `{}`, "--after", "--retries", "1", "--timeout", "200ms")
		assert.NotContains(t, r.stdout+r.stderr, "hunter2", "send --after")
		r = cli(t, "", "send", "--url", u, "--body", `{}`, "--count", "2", "--timeout", "200ms")
		assert.NotContains(t, r.stdout+r.stderr, "hunter2", "send --count")
		r = cli(t, "", "send", "--url", u, "--body", `{}`, "--json", "--timeout", "200ms")
		assert.NotContains(t, r.stdout+r.stderr, "hunter2", "send --json")
		r = cli(t, "", "doctor", "--url", u+"?sig=hunter2", "--timeout", "200ms")
		assert.Equal(t, exitFailure, r.code)
		assert.NotContains(t, r.stdout+r.stderr, "hunter2", "doctor")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://ops:hunter2@app.example/cb?x=1": "https://ops:xxxxx@app.example/cb?x=1",
		"https://hunter2@app.example/cb":         "https://xxxxx@app.example/cb",
		"https://app.example/cb":                 "https://app.example/cb",
		"http://a b@%zz":                         "(a URL that does not parse)",
	} {
		assert.Equal(t, want, redactURL(in), in)
	}
}

// listen prints what an unverified peer sent quoted, so that escape
// sequences reach the operator's terminal only as escapes.
func TestListenQuotesUntrustedText(t *testing.T) {
	url, out := listening(t, "--verbose")
	const esc = "\x1b[2J\x1b]0;pwned\x07"
	req, err := http.NewRequest("POST", url+"?appId=1&command="+neturl.QueryEscape(esc+"\r\nfake line")+"&x=%9b", bytes.NewReader([]byte("{\"text\":\"\u009b31m\u202eevil\"}")))
	require.NoError(t, err)
	// net/http refuses control bytes in headers on both sides; C1
	// controls and bidi overrides, in UTF-8, pass.
	req.Header.Set("Webhook-Id", "id\u009b31m")
	req.Header.Set("X-Evil", "a\u202eb")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	// An unverified request: listen has no secret, so it reaches the
	// handler; a rejected one goes through the other printer.
	req2, err := http.NewRequest("PUT", url+"?appId=%1b[1m&command=%1b[5m", nil)
	require.NoError(t, err)
	res, err = http.DefaultClient.Do(req2)
	require.NoError(t, err)
	res.Body.Close()

	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && strings.Count(out.String(), "\n\n") < 3 {
		time.Sleep(10 * time.Millisecond) // polling for the condition, not a fixed wait
	}
	printed := out.String()
	for _, c := range []string{"\x1b", "\x07", "\r", "\u009b", "\u202e"} {
		assert.NotContains(t, printed, c, "a raw %q reached the terminal:\n%s", c, printed)
	}
	assert.Contains(t, printed, `\x1b[2J`)
	assert.Contains(t, printed, `\u009b31m`, "the body stays JSON, the character escaped")
	assert.Contains(t, printed, `id\u009b31m`)
	assert.NotContains(t, printed, "\nfake line", "no forged line")
}

// Issue 25, attack 8: listen --forward-to with --forward-secret but no
// --secret signed any request anyone sent it, such as a cross-site
// text/plain POST from a web page, and the App backend's receiver took
// the forgery as the IM server's. Now listen refuses to start that way.
func TestForwardIsNoSigningOracle(t *testing.T) {
	secret := callbacktest.NewSecret()
	backend := callbacktest.NewServer(t, callbacktest.Config{Secret: secret})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"listen", "--addr", "127.0.0.1:0", "--forward-to", backend.URL, "--forward-secret", secret}, nil, out, errOut)
	}()
	addr := regexp.MustCompile(`on (http://\S+/callback)`)
	var url string
	waitFor(t, func() bool {
		select {
		case code := <-done:
			done <- code
			return true
		default:
		}
		m := addr.FindStringSubmatch(out.String() + errOut.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	}, "listen neither refused nor started: %s", errOut)
	if url != "" {
		// It started: forge a callback as a web page would.
		res, err := http.Post(url+"?appId=1&command=message.send.before", "text/plain", strings.NewReader(`{"text":"forged"}`))
		require.NoError(t, err)
		res.Body.Close()
		cancel()
		<-done
		for _, c := range backend.Calls() {
			assert.False(t, c.Verified, "the App backend verified a forged callback that listen signed")
		}
		t.Fatalf("listen started with --forward-secret and no --secret; the backend got %d calls", len(backend.Calls()))
	}
	assert.Equal(t, exitUsage, <-done)
	assert.Contains(t, errOut.String(), "--unauthenticated", "the refusal names the way out")
	assert.Empty(t, backend.Calls())

	// Said explicitly, it starts, and says so.
	_, lout := listening(t, "--forward-to", backend.URL, "--forward-secret", secret, "--unauthenticated")
	assert.Contains(t, lout.String(), "anyone's request is forwarded signed")
	r := cli(t, "", "listen", "--secret", secret, "--unauthenticated")
	assert.Equal(t, exitUsage, r.code, "--unauthenticated with --secret contradicts itself")
}

// rawControls are what must never reach the operator's terminal raw: ESC,
// BEL, a carriage return, a C1 CSI, a C1 NEL and bidi controls.
var rawControls = []string{"\x1b", "\x07", "\r", "\u009b", "\u0085", "\u202e", "\u2066"}

// assertNoRaw checks that out holds none of rawControls.
func assertNoRaw(t *testing.T, out, what string) {
	t.Helper()
	for _, c := range rawControls {
		assert.NotContains(t, out, c, "%s: a raw %q reached the terminal:\n%s", what, c, out)
	}
}

// Issue 25, attack 6: apps list printed a rule's command name, written
// into the table by whoever can write it, raw, in the table and (C1, bidi)
// in --json.
func TestAppsListQuotesTheDatabase(t *testing.T) {
	file := filepath.Join(t.TempDir(), "apps.db")
	r := cli(t, "", "apps", "set", "--db", file, "--create", "--app", "1", "--url", "http://app.example/cb", "--rule", "ok.command=fail-closed")
	require.Equal(t, exitAllow, r.code, r.stderr)
	db, err := sqlite.Open(file)
	require.NoError(t, err)
	hostile := []string{"\x1b[2J\x1b]0;pwned\x07", "\u009b31mred", "evil\u202etxt.exe", "\u2066x\u0085y\r\nfake"}
	for _, cmd := range hostile {
		_, err := db.Exec(`INSERT INTO imcallback_app_commands (app_id, command, disabled, fail_closed, timeout_ms) VALUES (1, ?, 0, 0, 0)`, cmd)
		require.NoError(t, err)
	}
	_, err = db.Exec(`UPDATE imcallback_apps SET url = ? WHERE app_id = 1`, "http://app\u202eexample/cb")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	r = cli(t, "", "apps", "list", "--db", file)
	require.Equal(t, exitAllow, r.code, r.stderr)
	assertNoRaw(t, r.stdout, "apps list")
	assert.Contains(t, r.stdout, `"\x1b[2J\x1b]0;pwned\a"=enabled`, "quoted as Go quotes it")
	assert.Contains(t, r.stdout, "ok.command=fail-closed", "a printable name as it is")

	r = cli(t, "", "apps", "list", "--db", file, "--json")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assertNoRaw(t, r.stdout, "apps list --json")
	var list []appJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), "still JSON: %s", r.stdout)
	require.Len(t, list, 1)
	for _, cmd := range hostile {
		assert.Contains(t, list[0].Rules, cmd+"=enabled", "the escapes mean the same characters")
	}
	assert.Equal(t, "http://app\u202eexample/cb", list[0].URL)
}

// Issue 25, attack 7: send printed a hostile App backend's non-JSON 2xx
// answer raw on its error path (it could clear the screen or print a fake
// OK), and --json passed C1 and bidi characters in msg, data, answer and
// status body.
func TestSendQuotesTheAppBackend(t *testing.T) {
	const evil = "\x1b[2J\x1b]0;pwned\x07\rOK allow\u009b31m\u202eevil\u0085"
	answers := map[string]func(w http.ResponseWriter){
		"not JSON": func(w http.ResponseWriter) { _, _ = io.WriteString(w, evil) },
		"JSON": func(w http.ResponseWriter) {
			_, _ = io.WriteString(w, `{"code":200,"msg":"ok`+"\u009b31m\u202e"+`","data":{"t":"`+"\u2066\u0085"+`"}}`)
		},
		"deny": func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"code":403,"msg":"`+"\u009b2J\u202e"+`"}`) },
		"status body": func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, evil)
		},
		"JSON no code": func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"x":"`+"\u009b31m\u202e"+`"}`) },
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { answer(w) }))
			t.Cleanup(backend.Close)
			r := cli(t, "", "send", "--url", backend.URL, "--body", `{}`, "--retries", "0")
			assert.NotEqual(t, exitUsage, r.code, r.stderr)
			assertNoRaw(t, r.stdout+r.stderr, "send")
			assert.Contains(t, r.stdout, `\u009b`, "the answer is shown, escaped")
			r = cli(t, "", "send", "--url", backend.URL, "--body", `{}`, "--retries", "0", "--json")
			assert.NotEqual(t, exitUsage, r.code, r.stderr)
			assertNoRaw(t, r.stdout+r.stderr, "send --json")
			assert.Contains(t, r.stdout, `\u009b`, "the answer is shown, escaped")
			var j map[string]any
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &j), "still JSON: %s", r.stdout)
		})
	}
}

func TestGraphic(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: ok":        "plain text: ok",
		"a\x1b[2Jb\x07":         `a\x1b[2Jb\a`,
		"line\nfake":            `line\nfake`,
		"csi\u009b31m \u202eab": `csi\u009b31m \u202eab`,
		"héllo ✓":               "héllo ✓",
		"bad\xffutf8":           `bad\xffutf8`,
	} {
		assert.Equal(t, want, graphic(in), "%q", in)
	}
	assert.Equal(t, `"\x9b31m"`, printable("\x9b31m"), "a byte that is not UTF-8 is quoted")
	assert.Equal(t, `"\x9b31m"`, safe("\x9b31m"))
}

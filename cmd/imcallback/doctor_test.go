package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
)

func TestDoctorAgainstListen(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.proto.String(), func(t *testing.T) {
			url, out := listening(t, "--protocol", p.proto.String(), "--secret", p.secret, "--deny-pattern", ".")
			r := cli(t, "", "doctor", "--url", url, "--protocol", p.proto.String(), "--secret", p.secret)
			require.Equal(t, exitAllow, r.code, "stdout: %s stderr: %s", r.stdout, r.stderr)
			assert.Contains(t, r.stdout, "ok    signature accepted")
			assert.Contains(t, r.stdout, "ok    answer in the "+p.proto.String()+" protocol")
			assert.NotContains(t, r.stdout, "\x1b[", "no colour off a terminal")
			waitFor(t, func() bool { return strings.Contains(out.String(), "probe of Dispatcher.Check") }, "listen prints the probe: %s", out)

			r = cli(t, "", "doctor", "--url", url, "--protocol", p.proto.String())
			assert.Equal(t, exitFailure, r.code)
			assert.Contains(t, r.stdout, "FAIL  signature required (401)")
			assert.Contains(t, r.stdout, "answer body: ")
		})
	}
}

func TestDoctorFindings(t *testing.T) {
	secret := callbacktest.NewSecret()
	signed := callbacktest.NewServer(t, callbacktest.Config{Secret: secret})
	tencent := callbacktest.NewServer(t, callbacktest.Config{Protocol: callback.Tencent})
	hangs := callbacktest.NewServer(t, callbacktest.Config{})
	hangs.On(callback.CheckCommand, callbacktest.Hang())
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<html>\x1b[31m</html>"))
	}))
	defer html.Close()
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
		_ = buf.Flush()
	}))
	defer cut.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/callback"
	require.NoError(t, ln.Close())

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"refused", []string{"--url", closed}, []string{"FAIL  unreachable: Post", "connection refused", "hint: is the App backend running"}},
		{"timeout", []string{"--url", hangs.URL, "--timeout", "200ms"}, []string{"FAIL  no answer within the timeout"}},
		{"wrong secret", []string{"--url", signed.URL, "--secret", callbacktest.NewSecret()}, []string{"ok    reached: answered 401", "FAIL  signature refused (401)", `answer body: "no webhook-signature matches`}},
		{"wrong protocol", []string{"--url", tencent.URL}, []string{"FAIL  refused as a bad request (400)", "try --protocol tencent"}},
		{"another server", []string{"--url", other.URL}, []string{"FAIL  not found (404)", `answer body: "404 page not found\n"`}},
		{"not the protocol", []string{"--url", html.URL}, []string{"FAIL  the answer is not in the appcommand protocol"}},
		{"answer cut off", []string{"--url", cut.URL}, []string{"FAIL  the answer (200) broke off", "unexpected EOF", "hint: the App backend closed the connection"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, "", append([]string{"doctor"}, tt.args...)...)
			assert.Equal(t, exitFailure, r.code, "stdout: %s", r.stdout)
			for _, want := range tt.want {
				assert.Contains(t, r.stdout, want)
			}
			assert.NotContains(t, r.stdout, "\x1b", "untrusted text is quoted")
		})
	}
}

func TestDoctorSecretFromEnv(t *testing.T) {
	secret := callbacktest.NewSecret()
	srv := callbacktest.NewServer(t, callbacktest.Config{Secret: secret})
	t.Setenv("IMCALLBACK_TEST_SECRET", secret)
	t.Setenv("CALLBACK_SECRET", secret)
	r := cli(t, "", "doctor", "--url", srv.URL, "--secret-from-env", "IMCALLBACK_TEST_SECRET")
	assert.Equal(t, exitAllow, r.code, r.stdout)
	r = cli(t, "", "doctor", "--url", srv.URL)
	assert.Equal(t, exitFailure, r.code, "no secret unless asked for, $CALLBACK_SECRET or not: %s", r.stdout)
	r = cli(t, "", "doctor", "--url", srv.URL, "--secret-from-env", "IMCALLBACK_TEST_UNSET")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "$IMCALLBACK_TEST_UNSET is not set")
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestVersionAndSecret(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		r := cli(t, "", arg)
		assert.Equal(t, exitAllow, r.code)
		assert.Regexp(t, `^imcallback \S.* \(go1\.\d+.*, \w+/\w+\)\n$`, r.stdout)
	}
	a, b := cli(t, "", "secret"), cli(t, "", "secret")
	require.Equal(t, exitAllow, a.code, a.stderr)
	assert.NotEqual(t, a.stdout, b.stdout, "random")
	s := strings.TrimSpace(a.stdout)
	assert.Len(t, s, len("whsec_")+44, "32 bytes, base64")
	d, err := callback.New(callback.Config{URL: "http://127.0.0.1:1/", Secret: s})
	require.NoError(t, err, "the library accepts it")
	require.NoError(t, d.Close(t.Context()))
	srv := callbacktest.NewServer(t, callbacktest.Config{Secret: s})
	assert.Equal(t, exitAllow, cli(t, "", "doctor", "--url", srv.URL, "--secret", s).code, "and so does the receiver")
	r := cli(t, "", "secret", "--bytes", "64")
	assert.Len(t, strings.TrimSpace(r.stdout), len("whsec_")+88)
	assert.Equal(t, exitUsage, cli(t, "", "secret", "--bytes", "8").code)
}

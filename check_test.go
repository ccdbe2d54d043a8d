package callback_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/command"
)

// newChecked returns a Dispatcher on cfg, closed when the test ends.
func newChecked(t *testing.T, cfg callback.Config) *callback.Dispatcher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d, err := callback.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

// closedPort returns a loopback URL on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "http://" + addr + "/callback"
}

func TestCheckPasses(t *testing.T) {
	for _, tt := range []struct {
		name   string
		proto  callback.Protocol
		secret string
	}{
		{"seed", callback.AppCommand, callbacktest.NewSecret()},
		{"seed unsigned", callback.AppCommand, ""},
		{"tencent", callback.Tencent, "token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The probe is allowed even by an App backend that denies everything else.
			srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: tt.proto, Secret: tt.secret, Default: callbacktest.Deny(40001, "no")})
			d := newChecked(t, callback.Config{URL: srv.URL, Protocol: tt.proto, Secret: tt.secret})
			require.NoError(t, d.Check(context.Background(), 7))
			calls := srv.Calls()
			require.Len(t, calls, 1)
			assert.Equal(t, callback.CheckCommand, calls[0].Command)
			assert.Equal(t, 7, calls[0].AppID)
			assert.Equal(t, tt.secret != "", calls[0].Verified, "signed like any callback")
			assert.NotEmpty(t, calls[0].ID)
			st := d.Stats()
			assert.Zero(t, st.Total, "the probe is not counted as a command")
			assert.NotContains(t, st.Commands, callback.CheckCommand)
		})
	}
}

func TestCheckFindings(t *testing.T) {
	secret := callbacktest.NewSecret()
	tests := []struct {
		name   string
		setup  func(t *testing.T) callback.Config
		want   []error
		status int
		body   string // in CheckError.Body
	}{
		{"refused", func(t *testing.T) callback.Config {
			return callback.Config{URL: closedPort(t)}
		}, []error{callback.ErrUnreachable}, 0, ""},
		{"unknown host", func(t *testing.T) callback.Config {
			return callback.Config{URL: "http://imcallback-check.invalid/callback"}
		}, []error{callback.ErrUnreachable}, 0, ""},
		{"timeout", func(t *testing.T) callback.Config {
			srv := callbacktest.NewServer(t, callbacktest.Config{})
			srv.On(callback.CheckCommand, callbacktest.Hang())
			return callback.Config{URL: srv.URL, Timeout: 200 * time.Millisecond}
		}, []error{callback.ErrTimeout}, 0, ""},
		{"status with body", func(t *testing.T) callback.Config {
			srv := callbacktest.NewServer(t, callbacktest.Config{})
			srv.On(callback.CheckCommand, callbacktest.Status(502))
			return callback.Config{URL: srv.URL}
		}, []error{callback.ErrStatus}, 502, "Bad Gateway"},
		{"wrong secret", func(t *testing.T) callback.Config {
			srv := callbacktest.NewServer(t, callbacktest.Config{Secret: secret})
			return callback.Config{URL: srv.URL, Secret: callbacktest.NewSecret()}
		}, []error{callback.ErrSignatureRefused, callback.ErrStatus}, 401, "matches"},
		{"no secret", func(t *testing.T) callback.Config {
			srv := callbacktest.NewServer(t, callbacktest.Config{Secret: secret})
			return callback.Config{URL: srv.URL}
		}, []error{callback.ErrSignatureRefused}, 401, ""},
		{"wrong protocol", func(t *testing.T) callback.Config {
			srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: callback.Tencent})
			return callback.Config{URL: srv.URL, Protocol: callback.AppCommand}
		}, []error{callback.ErrStatus}, 400, "missing CallbackCommand"},
		{"not the protocol", func(t *testing.T) callback.Config {
			srv := callbacktest.NewServer(t, callbacktest.Config{})
			srv.On(callback.CheckCommand, callbacktest.Garbage())
			return callback.Config{URL: srv.URL}
		}, []error{callback.ErrBadAnswer}, 200, ""},
		{"another server on the port", func(t *testing.T) callback.Config {
			b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
				http.NotFound(w, nil)
			})
			return callback.Config{URL: b.URL + "/callback"}
		}, []error{callback.ErrStatus}, 404, "404 page not found"},
		{"answer cut off", func(t *testing.T) callback.Config {
			b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer conn.Close()
				_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"code\":")
				_ = buf.Flush()
			})
			return callback.Config{URL: b.URL}
		}, []error{callback.ErrUnreachable}, 200, ""},
		{"answer too slow", func(t *testing.T) callback.Config {
			srv := callbacktest.NewServer(t, callbacktest.Config{})
			srv.On(callback.CheckCommand, callbacktest.Allow().SlowBody(2*time.Second))
			return callback.Config{URL: srv.URL, Timeout: 300 * time.Millisecond}
		}, []error{callback.ErrTimeout}, 200, ""},
		{"unknown app", func(t *testing.T) callback.Config {
			return callback.Config{Resolver: callback.ResolverFunc(func(context.Context, int) (callback.Endpoint, error) {
				return callback.Endpoint{}, callback.ErrUnknownApp
			})}
		}, []error{callback.ErrResolve, callback.ErrUnknownApp}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newChecked(t, tt.setup(t))
			start := time.Now()
			err := d.Check(context.Background(), 1)
			require.Error(t, err)
			assert.Less(t, time.Since(start), 30*time.Second, "Check must end at its timeout, not hang")
			var ce *callback.CheckError
			require.ErrorAs(t, err, &ce)
			for _, want := range tt.want {
				assert.ErrorIs(t, err, want)
			}
			assert.Equal(t, tt.status, ce.Status)
			assert.Contains(t, string(ce.Body), tt.body)
			assert.NotContains(t, err.Error(), "?", "the URL is redacted: %v", err)
			if tt.body != "" {
				assert.NotContains(t, err.Error(), tt.body, "the body stays out of the error")
			}
		})
	}
}

func TestCheckBoundsBody(t *testing.T) {
	big := make([]byte, 10<<10)
	for i := range big {
		big[i] = 'x'
	}
	b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write(big)
	})
	d := newChecked(t, callback.Config{URL: b.URL})
	var ce *callback.CheckError
	require.ErrorAs(t, d.Check(context.Background(), 1), &ce)
	assert.Len(t, ce.Body, 1<<10)
}

func TestCheckBypassesBreaker(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	srv.On(callback.CheckCommand, callbacktest.Status(503))
	d := newChecked(t, callback.Config{URL: srv.URL, Breaker: callback.Breaker{ConsecutiveFailures: 2}})
	for range 5 {
		require.ErrorIs(t, d.Check(context.Background(), 1), callback.ErrStatus)
	}
	assert.Zero(t, d.Stats().Total, "failed probes are not counted either")
	r := d.Before(context.Background(), 1, command.MessageSendBefore, []byte(`{}`))
	require.NoError(t, r.Err, "failed probes must not open the breaker")

	// Open it with real failures: the probe still goes out, and does not close it.
	srv.On(command.MessageSendBefore, callbacktest.Status(503))
	for range 2 {
		d.Before(context.Background(), 1, command.MessageSendBefore, []byte(`{}`))
	}
	r = d.Before(context.Background(), 1, command.MessageSendBefore, []byte(`{}`))
	require.ErrorIs(t, r.Err, callback.ErrBreakerOpen)
	srv.On(callback.CheckCommand)
	require.NoError(t, d.Check(context.Background(), 1), "the probe is sent while the breaker is open")
	r = d.Before(context.Background(), 1, command.MessageSendBefore, []byte(`{}`))
	require.ErrorIs(t, r.Err, callback.ErrBreakerOpen, "a passing probe does not close the breaker")
}

func TestCheckContextAndClose(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	srv.On(callback.CheckCommand, callbacktest.Hang())
	d, err := callback.New(callback.Config{URL: srv.URL})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = d.Check(ctx, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var ce *callback.CheckError
	assert.False(t, errors.As(err, &ce), "the caller's ctx is not the App backend's fault")
	require.NoError(t, d.Close(context.Background()))
	require.ErrorIs(t, d.Check(context.Background(), 1), callback.ErrClosed)
}

func TestWithStatusBody(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{Secret: callbacktest.NewSecret()})
	d := newChecked(t, callback.Config{URL: srv.URL})
	var body []byte
	r := d.Before(callback.WithStatusBody(context.Background(), &body), 1, command.MessageSendBefore, []byte(`{}`))
	require.ErrorIs(t, r.Err, callback.ErrStatus)
	assert.Contains(t, string(body), "webhook-signature", "the receiver's reason for the 401")
	assert.NotContains(t, r.Err.Error(), "webhook-signature", "never in the error")

	ok := callbacktest.NewServer(t, callbacktest.Config{})
	d = newChecked(t, callback.Config{URL: ok.URL})
	body = nil
	require.NoError(t, d.Before(callback.WithStatusBody(context.Background(), &body), 1, command.MessageSendBefore, []byte(`{}`)).Err)
	assert.Nil(t, body, "a 2xx answer leaves it")
}

// readmeCheck is the README's start-up check, quoted verbatim.
func readmeCheck(ctx context.Context, d *callback.Dispatcher, appID int) error {
	if err := d.Check(ctx, appID); err != nil {
		var ce *callback.CheckError
		if errors.As(err, &ce) && errors.Is(err, callback.ErrSignatureRefused) {
			slog.Error("the App backend refuses our secret", "url", ce.URL, "status", ce.Status)
		}
		return err // or log it and carry on, failing open
	}
	return nil
}

func TestREADMECheck(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{Secret: callbacktest.NewSecret()})
	d := newChecked(t, callback.Config{URL: srv.URL, Secret: callbacktest.NewSecret()})
	require.ErrorIs(t, readmeCheck(context.Background(), d, 1), callback.ErrSignatureRefused)
}

// An App backend that denies commands it does not know passes: the probe
// checks the way there, not the App's rules.
func TestCheckPassesADeny(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"code":404,"msg":"unknown command"}`))
	})
	d := newChecked(t, callback.Config{URL: b.URL})
	require.NoError(t, d.Check(context.Background(), 1))
	require.Len(t, b.requests(), 1)
	assert.Equal(t, callback.CheckCommand, b.requests()[0].Query["command"][0])
	assert.JSONEq(t, `{"imcallback":"check"}`, string(b.requests()[0].Body))
	assert.Zero(t, d.Stats().Total)
}

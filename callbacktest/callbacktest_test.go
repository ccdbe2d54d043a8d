package callbacktest_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/tencent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newDispatcher returns a Dispatcher closed when the test ends.
func newDispatcher(t *testing.T, cfg callback.Config) *callback.Dispatcher {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.RetryWaitMin, cfg.RetryWaitMax = time.Millisecond, 5*time.Millisecond
	d, err := callback.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, d.Close(ctx))
	})
	return d
}

// protocols are the two wire formats, each signed with a secret of its kind.
var protocols = []struct {
	proto  callback.Protocol
	secret string
	deny   int // a deny code that passes its message to the client
}{
	{callback.AppCommand, callbacktest.NewSecret(), 40001},
	{callback.Tencent, "tencent-token", 120001},
}

func TestAnswers(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.proto.String(), func(t *testing.T) {
			srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: p.proto, Secret: p.secret})
			d := newDispatcher(t, callback.Config{URL: srv.URL, Protocol: p.proto, Secret: p.secret, Timeout: time.Second})

			// Drop is Tencent's ErrorCode 2; Seed cannot say it and denies.
			drop := callback.Response{Action: callback.Drop, Code: 2}
			if p.proto == callback.AppCommand {
				drop = callback.Response{Action: callback.Deny, Code: 403, Msg: "dropped"}
			}
			tests := []struct {
				name   string
				answer callbacktest.Answer
				want   callback.Response
				data   string // a field of Response.Data that must be there
			}{
				{"allow", callbacktest.Allow(), callback.Response{Action: callback.Allow}, ""},
				{"zero answer allows", callbacktest.Answer{}, callback.Response{Action: callback.Allow}, ""},
				{"deny", callbacktest.Deny(p.deny, "banned word"), callback.Response{Action: callback.Deny, Code: p.deny, Msg: "banned word"}, ""},
				{"drop", callbacktest.Drop(), drop, ""},
				{"rewrite", callbacktest.Rewrite(`{"text":"h***"}`), callback.Response{Action: callback.Allow}, `"text":"h***"`},
				{"short delay", callbacktest.Allow().Delayed(50 * time.Millisecond), callback.Response{Action: callback.Allow}, ""},
			}
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cmd := fmt.Sprintf("cmd.%d", i)
					srv.On(cmd, tt.answer)
					got := d.Before(context.Background(), 7, cmd, []byte(`{"text":"hello"}`))
					require.NoError(t, got.Err)
					assert.Equal(t, tt.want.Action, got.Action, "action")
					if tt.want.Action != callback.Allow {
						assert.Equal(t, tt.want.Code, got.Code, "code")
						assert.Equal(t, tt.want.Msg, got.Msg, "msg")
					}
					if tt.data != "" {
						assert.Contains(t, string(got.Data), tt.data, "rewritten data")
					} else {
						assert.Nil(t, got.Data, "data")
					}
					c := srv.WaitFor(time.Second, callbacktest.Command(cmd))
					assert.True(t, c.Verified, "the signed request must be verified")
					assert.Empty(t, c.Rejected)
					assert.Equal(t, tt.answer, c.Answer)
				})
			}
		})
	}
}

func TestFaults(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.proto.String(), func(t *testing.T) {
			srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: p.proto, Secret: p.secret})
			const timeout = 300 * time.Millisecond
			tests := []struct {
				name    string
				answer  callbacktest.Answer
				wantErr error  // errors.Is target, or nil
				errText string // a part of the error's text otherwise
			}{
				{"5xx", callbacktest.Status(http.StatusServiceUnavailable), callback.ErrStatus, "503"},
				{"redirect", callbacktest.Status(http.StatusFound), callback.ErrRedirect, "302"},
				{"garbage", callbacktest.Garbage(), callback.ErrBadAnswer, ""},
				{"hang", callbacktest.Hang(), context.DeadlineExceeded, ""},
				{"long delay", callbacktest.Deny(p.deny, "late").Delayed(time.Minute), context.DeadlineExceeded, ""},
				{"slow body", callbacktest.Deny(p.deny, "slow").SlowBody(time.Minute), context.DeadlineExceeded, ""},
				{"reset", callbacktest.Reset(), nil, "reset"},
			}
			// Only the faults that wait for the timeout get the short one; the
			// others answer at once, however loaded the machine, within a
			// minute, what the faults take to answer.
			rules := map[string]callback.Rule{}
			for i, tt := range tests {
				if tt.wantErr == context.DeadlineExceeded {
					rules[fmt.Sprintf("fault.%d", i)] = callback.Rule{Timeout: timeout}
				}
			}
			d := newDispatcher(t, callback.Config{URL: srv.URL, Protocol: p.proto, Secret: p.secret, Timeout: time.Minute, Commands: rules})
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cmd := fmt.Sprintf("fault.%d", i)
					srv.On(cmd, tt.answer)
					start := time.Now()
					got := d.Before(context.Background(), 7, cmd, []byte(`{}`))
					assert.Less(t, time.Since(start), 20*time.Second, "Before must give up near its %v timeout, not wait a minute", timeout)
					require.Error(t, got.Err, "a %v answer must fail the callback", tt.answer)
					assert.Equal(t, callback.Allow, got.Action, "Before fails open")
					if tt.wantErr != nil {
						assert.ErrorIs(t, got.Err, tt.wantErr)
					}
					if tt.errText != "" {
						assert.Contains(t, got.Err.Error(), tt.errText)
					}
					assert.Equal(t, tt.answer, srv.WaitFor(time.Second, callbacktest.Command(cmd)).Answer)
				})
			}
		})
	}
}

func TestSlowBodyArrivesWhole(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	srv.On("cmd", callbacktest.Deny(40001, "slowly but surely").SlowBody(200*time.Millisecond))
	d := newDispatcher(t, callback.Config{URL: srv.URL, Timeout: time.Minute})
	start := time.Now()
	got := d.Before(context.Background(), 1, "cmd", []byte(`{}`))
	require.NoError(t, got.Err)
	assert.Equal(t, "slowly but surely", got.Msg)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "the body must be trickled over about 200 ms")
}

func TestScriptedSequenceAndRecorder(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	// Two failures, then success: After retries until delivered.
	srv.On(command.MessageSendAfter, callbacktest.Status(503), callbacktest.Reset(), callbacktest.Allow())
	d := newDispatcher(t, callback.Config{URL: srv.URL})
	require.NoError(t, d.After(context.Background(), 42, command.MessageSendAfter, []byte(`{"text":"hi"}`)))

	calls := srv.WaitN(3, 5*time.Second)
	for i, c := range calls {
		assert.Equal(t, 42, c.AppID, "call %d app", i)
		assert.Equal(t, command.MessageSendAfter, c.Command, "call %d command", i)
		assert.JSONEq(t, `{"text":"hi"}`, string(c.Body), "call %d body", i)
		assert.Equal(t, "application/json", c.Header.Get("Content-Type"))
		assert.Equal(t, calls[0].ID, c.ID, "every attempt carries the event's webhook-id")
		assert.False(t, c.Verified, "nothing is verified without a secret")
	}
	assert.NotEmpty(t, calls[0].ID)
	assert.Equal(t, []string{"status 503", "reset", "allow"},
		[]string{calls[0].Answer.String(), calls[1].Answer.String(), calls[2].Answer.String()})

	// Once the script runs out, its last answer repeats.
	require.NoError(t, d.After(context.Background(), 42, command.MessageSendAfter, []byte(`{}`)))
	assert.Equal(t, "allow", srv.WaitN(4, 5*time.Second)[3].Answer.String())

	// On with no answers goes back to Config.Default.
	srv.On(command.MessageSendBefore, callbacktest.Deny(1, "x"))
	srv.On(command.MessageSendBefore)
	assert.True(t, d.Before(context.Background(), 1, command.MessageSendBefore, []byte(`{}`)).OK())
	assert.Len(t, srv.Calls(), 5)
}

func TestDefaultAnswer(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{Default: callbacktest.Deny(40001, "closed")})
	d := newDispatcher(t, callback.Config{URL: srv.URL})
	got := d.Before(context.Background(), 1, "anything", []byte(`{}`))
	assert.Equal(t, callback.Deny, got.Action)
	assert.Equal(t, "closed", got.Msg)
}

func TestSignatureRejected(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.proto.String(), func(t *testing.T) {
			srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: p.proto, Secret: p.secret})
			srv.On("cmd", callbacktest.Deny(p.deny, "first"), callbacktest.Deny(p.deny, "second"))
			wrong := callbacktest.NewSecret()
			if p.proto == callback.Tencent {
				wrong = "another-token"
			}
			for _, tc := range []struct {
				name, secret, reason string
			}{
				{"unsigned", "", "missing"},
				{"wrong secret", wrong, "match"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					d := newDispatcher(t, callback.Config{URL: srv.URL, Protocol: p.proto, Secret: tc.secret})
					got := d.Before(context.Background(), 1, "cmd", []byte(`{}`))
					assert.ErrorIs(t, got.Err, callback.ErrStatus, "a rejected request is a failed callback")
					assert.Contains(t, got.Err.Error(), "401")
					calls := srv.Calls()
					c := calls[len(calls)-1]
					assert.False(t, c.Verified)
					assert.Contains(t, c.Rejected, tc.reason)
					assert.Equal(t, callbacktest.Answer{}, c.Answer, "a rejected request gets no scripted answer")
				})
			}
			// Rejected requests used up no answer.
			d := newDispatcher(t, callback.Config{URL: srv.URL, Protocol: p.proto, Secret: p.secret})
			assert.Equal(t, "first", d.Before(context.Background(), 1, "cmd", []byte(`{}`)).Msg)
		})
	}
}

func TestRejectsWhatReceiverRejects(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{})
	res, err := http.Post(srv.URL+"?appId=1&command=cmd", "application/json", strings.NewReader("not json"))
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)
	c := srv.WaitN(1, time.Second)[0]
	assert.Equal(t, "cmd", c.Command)
	assert.Equal(t, "body is not valid JSON in UTF-8", c.Rejected)
}

func TestTencentClientRecorded(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{Protocol: callback.Tencent})
	d := newDispatcher(t, callback.Config{URL: srv.URL, Protocol: callback.Tencent})
	ctx := callback.WithClient(context.Background(), "203.0.113.9", "Android")
	require.True(t, d.Before(ctx, 1400000000, tencent.C2CBeforeSendMsg, []byte(`{}`)).OK())
	c := srv.WaitN(1, time.Second)[0]
	assert.Equal(t, 1400000000, c.AppID)
	assert.Equal(t, tencent.C2CBeforeSendMsg, c.Command)
	assert.Equal(t, "203.0.113.9", c.ClientIP)
	assert.Equal(t, "Android", c.Platform)
	assert.Equal(t, "json", c.Query.Get("contenttype"))
}

func TestCloseEndsHangingRequests(t *testing.T) {
	srv := callbacktest.NewServer(t, callbacktest.Config{Default: callbacktest.Hang()})
	d := newDispatcher(t, callback.Config{URL: srv.URL, Timeout: time.Minute})
	done := make(chan callback.Response, 1)
	go func() { done <- d.Before(context.Background(), 1, "cmd", []byte(`{}`)) }()
	srv.WaitN(1, 5*time.Second)
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a hanging request")
	}
	select {
	case r := <-done:
		assert.Error(t, r.Err)
	case <-time.After(5 * time.Second):
		t.Fatal("Before still blocked after the Server closed")
	}
	srv.Close() // again: a no-op
}

// fakeT records a test failure instead of ending the test.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = fmt.Sprintf(format, args...)
}

func TestWaitTimeoutFailsTheTest(t *testing.T) {
	ft := &fakeT{TB: t}
	srv := callbacktest.NewServer(ft, callbacktest.Config{})
	d := newDispatcher(t, callback.Config{URL: srv.URL})
	require.True(t, d.Before(context.Background(), 1, "one", []byte(`{}`)).OK())

	start := time.Now()
	got := srv.WaitN(2, 100*time.Millisecond)
	assert.Len(t, got, 1)
	assert.Less(t, time.Since(start), 20*time.Second, "WaitN must give up at its 100 ms")
	assert.Contains(t, ft.failed, "got 1 callbacks within 100ms, want 2")
	assert.Contains(t, ft.failed, "one app 1 answered: allow")

	ft.failed = ""
	srv.WaitFor(50*time.Millisecond, callbacktest.Command("two"))
	assert.Contains(t, ft.failed, "no matching callback within 50ms")
}

func TestNewServerRejectsBadSecret(t *testing.T) {
	ft := &fakeT{TB: t}
	assert.Nil(t, callbacktest.NewServer(ft, callbacktest.Config{Secret: "not-a-whsec"}))
	assert.Contains(t, ft.failed, "callbacktest: receiver: invalid config")
	assert.NotContains(t, ft.failed, "not-a-whsec", "the secret must not be in the error")
}

func TestNewSecret(t *testing.T) {
	a, b := callbacktest.NewSecret(), callbacktest.NewSecret()
	assert.NotEqual(t, a, b)
	assert.True(t, strings.HasPrefix(a, "whsec_"), "got %q, want a whsec_ secret", a)
	newDispatcher(t, callback.Config{URL: "http://127.0.0.1:1", Secret: a}) // fails unless New accepts it
}

package callback_test

import (
	"cmp"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/answer"
)

func TestBeforeWireFormat(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200,"msg":"success"}`))
	// The URL's own query is kept; its appId is replaced by the call's.
	d, _ := newDispatcher(t, callback.Config{URL: b.URL + "/callback?region=eu&appId=999"})

	body := []byte(`{"fromId":"alice","toId":"bob","text":"hi \u00e9"}`)
	r := d.Before(context.Background(), 10000, "message.send.before", body)
	require.NoError(t, r.Err)

	got := b.requests()
	require.Len(t, got, 1)
	req := got[0]
	assert.Equal(t, http.MethodPost, req.Method)
	assert.Equal(t, "/callback", req.Path)
	assert.Equal(t, []string{"10000"}, req.Query["appId"], "appId")
	assert.Equal(t, []string{"message.send.before"}, req.Query["command"], "command")
	assert.Equal(t, []string{"eu"}, req.Query["region"], "the URL's own query")
	assert.Equal(t, "application/json", req.Header.Get("Content-Type"))
	assert.Contains(t, req.Header.Get("User-Agent"), "imcallback")
	assert.NotEmpty(t, req.Header.Get("Webhook-Id"))
	assert.Equal(t, body, req.Body, "body must be sent byte for byte")

	// Every event has its own webhook-id.
	d.Before(context.Background(), 10000, "message.send.before", body)
	got = b.requests()
	require.Len(t, got, 2)
	assert.NotEqual(t, got[0].Header.Get("Webhook-Id"), got[1].Header.Get("Webhook-Id"))
}

func TestBeforeAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		want   callback.Response
	}{
		{"allow", `{"code":200,"msg":"success"}`,
			callback.Response{Code: 200, Msg: "success", Action: callback.Allow}},
		{"allow without msg", `{"code":200}`,
			callback.Response{Code: 200, Action: callback.Allow}},
		{"deny with the App's code and msg", `{"code":40001,"msg":"banned word"}`,
			callback.Response{Code: 40001, Msg: "banned word", Action: callback.Deny}},
		{"deny with code 0", `{"code":0,"msg":"no"}`,
			callback.Response{Code: 0, Msg: "no", Action: callback.Deny}},
		{"rewrite", `{"code":200,"msg":"ok","data":{"text":"h*llo"}}`,
			callback.Response{Code: 200, Msg: "ok", Data: json.RawMessage(`{"text":"h*llo"}`), Action: callback.Allow}},
		{"rewrite a member list", `{"code":200,"data":["u1","u3"]}`,
			callback.Response{Code: 200, Data: json.RawMessage(`["u1","u3"]`), Action: callback.Allow}},
		{"null data is no data", `{"code":200,"data":null}`,
			callback.Response{Code: 200, Action: callback.Allow}},
		{"unknown fields are ignored", `{"code":200,"extra":[1,2]}`,
			callback.Response{Code: 200, Action: callback.Allow}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, answerJSON(200, tt.answer))
			d, _ := newDispatcher(t, callback.Config{URL: b.URL})
			got := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.want.Action == callback.Allow, got.OK())
		})
	}
}

// failure is an App backend, or a way of calling it, that makes Before fail.
type failure struct {
	name    string
	handler http.HandlerFunc                 // the backend's answer; nil: no backend listens
	ctx     func() (context.Context, func()) // the caller's context; nil: Background
	body    string                           // the event body; "": {}
	command string                           // "": message.send.before
	wantErr error                            // errors.Is target; nil: any error
	wantIn  string                           // substring of the error; "": any
	timeout time.Duration                    // Config.Timeout; 0: 10 s, which only a hung backend reaches
}

func failures() []failure {
	big := `{"code":200,"msg":"` + strings.Repeat("x", 1<<20) + `"}`
	return []failure{
		{name: "connection refused", handler: nil, wantIn: "refused"},
		{name: "connection reset", handler: reset},
		{name: "timeout", handler: hang, timeout: 400 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "caller's deadline", handler: hang, ctx: func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), 150*time.Millisecond)
		}, wantErr: context.DeadlineExceeded},
		{name: "caller canceled", handler: hang, ctx: func() (context.Context, func()) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, wantErr: context.Canceled},
		{name: "status 500", handler: answerJSON(500, `{"code":200}`), wantErr: callback.ErrStatus, wantIn: "500"},
		{name: "status 404", handler: answerJSON(404, `not found`), wantErr: callback.ErrStatus},
		{name: "redirect", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, wantErr: callback.ErrRedirect},
		{name: "not JSON", handler: answerJSON(200, `<html>oops</html>`), wantErr: callback.ErrBadAnswer},
		{name: "JSON without code", handler: answerJSON(200, `{"msg":"success"}`), wantErr: callback.ErrBadAnswer},
		{name: "code is a string", handler: answerJSON(200, `{"code":"200"}`), wantErr: callback.ErrBadAnswer},
		{name: "JSON array", handler: answerJSON(200, `[1,2]`), wantErr: callback.ErrBadAnswer},
		{name: "empty answer", handler: answerJSON(200, ``), wantErr: callback.ErrBadAnswer},
		{name: "204 no content", handler: answerJSON(204, ``), wantErr: callback.ErrBadAnswer},
		{name: "answer over 1 MiB", handler: answerJSON(200, big), wantErr: callback.ErrAnswerTooLarge},
		{name: "body cut short", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte(`{"code":`))
		}},
		{name: "invalid event body", handler: answerJSON(200, `{"code":200}`), body: `{"a":`, wantErr: callback.ErrInvalidBody},
		{name: "empty command", handler: answerJSON(200, `{"code":200}`), command: "-", wantErr: callback.ErrInvalidCommand},
	}
}

// reset closes the connection with a TCP reset instead of answering.
func reset(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func TestBeforeFailures(t *testing.T) {
	for _, f := range failures() {
		// Only the hung backend waits for the timeout; any other failure
		// gets a long one, so that a loaded machine reading a 1 MiB answer
		// slowly still sees the failure under test, not a timeout.
		timeout := cmp.Or(f.timeout, 10*time.Second)
		for _, closed := range []bool{false, true} {
			name := f.name + "/fail open"
			if closed {
				name = f.name + "/fail closed"
			}
			t.Run(name, func(t *testing.T) {
				url := "http://127.0.0.1:1/callback" // nothing listens on port 1
				var b *backend
				if f.handler != nil {
					b = newBackend(t, f.handler)
					url = b.URL + "/callback"
				}
				command := "message.send.before"
				switch f.command {
				case "-":
					command = ""
				case "":
				default:
					command = f.command
				}
				if command == "" && closed {
					t.Skip("no rule can name the empty command")
				}
				rules := map[string]callback.Rule{}
				if command != "" {
					rules[command] = callback.Rule{FailClosed: closed}
				}
				d, logs := newDispatcher(t, callback.Config{URL: url, Timeout: timeout, Commands: rules})
				ctx, cancel := context.Background(), func() {}
				if f.ctx != nil {
					ctx, cancel = f.ctx()
				}
				defer cancel()
				body := `{"secret":"do-not-log-me"}`
				if f.body != "" {
					body = f.body
				}

				start := time.Now()
				got := d.Before(ctx, 7, command, []byte(body))
				elapsed := time.Since(start)

				// Without its timeout or the caller's deadline, Before
				// would wait for the hung backend for ever: the bound only
				// tells that from a return near them (the caller's context
				// ends within 150 ms), on however loaded a machine.
				bound := timeout + 20*time.Second
				if f.ctx != nil {
					bound = 20 * time.Second
				}
				assert.Less(t, elapsed, bound, "Before must return at its timeout or the caller's deadline")
				require.Error(t, got.Err, "a failure must set Err")
				if f.wantErr != nil {
					assert.ErrorIs(t, got.Err, f.wantErr)
				}
				if f.wantIn != "" {
					assert.Contains(t, got.Err.Error(), f.wantIn)
				}
				if closed {
					assert.Equal(t, callback.Deny, got.Action)
					assert.Equal(t, 503, got.Code)
					assert.Equal(t, "callback failed", got.Msg)
					assert.False(t, got.OK())
				} else {
					assert.Equal(t, callback.Allow, got.Action)
					assert.Equal(t, 200, got.Code)
					assert.Equal(t, "success", got.Msg)
					assert.True(t, got.OK())
				}
				assert.Nil(t, got.Data)

				log := logs.String()
				assert.Contains(t, log, `"level":"ERROR"`)
				assert.Contains(t, log, `"app_id":7`)
				assert.Contains(t, log, `"elapsed"`)
				assert.NotContains(t, log, "do-not-log-me", "bodies must never be logged")
				assert.NotContains(t, log, "appId=", "URLs are logged without their query")
				assert.NotContains(t, got.Err.Error(), "appId=", "errors carry URLs without their query")
			})
		}
	}
}

func TestBeforeRuleTimeoutOverridesConfig(t *testing.T) {
	b := newBackend(t, hang)
	d, _ := newDispatcher(t, callback.Config{
		URL:      b.URL,
		Timeout:  time.Minute,
		Commands: map[string]callback.Rule{"friend.add.before": {Timeout: 200 * time.Millisecond}},
	})
	start := time.Now()
	r := d.Before(context.Background(), 1, "friend.add.before", []byte(`{}`))
	assert.ErrorIs(t, r.Err, context.DeadlineExceeded)
	// 200 ms against a minute: the bound is far from both.
	assert.Less(t, time.Since(start), 20*time.Second, "the rule's 200 ms timeout must apply, not the config's minute")
}

// The default timeout is 2 s: a call to a hung backend takes at least
// that, and about as long as one with an explicit 2 s timeout sent at the
// same time, the baseline that carries the machine's load.
func TestBeforeDefaultTimeoutIsTwoSeconds(t *testing.T) {
	b := newBackend(t, hang)
	def, _ := newDispatcher(t, callback.Config{URL: b.URL})
	two, _ := newDispatcher(t, callback.Config{URL: b.URL, Timeout: 2 * time.Second})
	call := func(d *callback.Dispatcher, r *callback.Response) time.Duration {
		start := time.Now()
		*r = d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
		return time.Since(start)
	}
	var baseline time.Duration
	var r2 callback.Response
	var wg sync.WaitGroup
	wg.Go(func() { baseline = call(two, &r2) })
	var r callback.Response
	elapsed := call(def, &r)
	wg.Wait()
	assert.ErrorIs(t, r.Err, context.DeadlineExceeded)
	assert.ErrorIs(t, r2.Err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, elapsed, 2*time.Second)
	// baseline is at least 2 s, so the bound leaves the load 2 s or more
	// of room, and a 5 s default already fails it.
	assert.Less(t, elapsed, 2*baseline, "the default call took %v, the 2 s one %v", elapsed, baseline)
}

func TestBeforeDisabledSendsNothing(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":1,"msg":"would deny"}`))
	d, _ := newDispatcher(t, callback.Config{
		URL:      b.URL,
		Commands: map[string]callback.Rule{"friend.add.before": {Disabled: true, FailClosed: true}},
	})
	r := d.Before(context.Background(), 1, "friend.add.before", []byte(`not even json`))
	assert.Equal(t, callback.Response{Code: 200, Msg: "success", Action: callback.Allow}, r)
	assert.Equal(t, 0, b.count(), "a disabled command must send nothing")
}

func TestBeforeReusesConnections(t *testing.T) {
	status := 200
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		answerJSON(status, `{"code":200}`)(w, r)
	})
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	for i := range 50 {
		if i == 25 {
			status = 500 // failures must not drop the pool either
		}
		d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	}
	// One connection, as a rule. net/http reuses a connection only once its
	// write loop has reported the request written, and waits 50 ms for that:
	// on a loaded machine it sometimes gives up and dials again. Without
	// keep-alive it would be 50, with a pool dropped on failures 26 or
	// more: the bound stays below those, far above the rule.
	assert.LessOrEqual(t, b.conns.Load(), int64(20), "sequential calls must share a keep-alive connection: got %d connections for 50 calls", b.conns.Load())
}

func TestBeforeAfterClose(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	d, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, d.Close(context.Background()))
	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	assert.ErrorIs(t, r.Err, callback.ErrClosed)
	assert.True(t, r.OK(), "a closed Dispatcher still fails open")
	assert.Equal(t, 0, b.count())
}

func TestActionString(t *testing.T) {
	for a, want := range map[callback.Action]string{
		callback.Allow: "allow", callback.Deny: "deny", callback.Drop: "drop", callback.Action(9): "Action(9)",
	} {
		assert.Equal(t, want, a.String())
	}
}

func TestBeforeAnswerHookKeepsTheRawAnswer(t *testing.T) {
	status, reply := 200, `{"code":40001,"msg":"no","extra":[1]}`
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { answerJSON(status, reply)(w, r) })
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})

	raw := []byte("stale")
	r := d.Before(answer.With(context.Background(), &raw), 1, "message.send.before", []byte(`{}`))
	assert.Equal(t, callback.Deny, r.Action)
	assert.Equal(t, reply, string(raw))

	reply = `not json`
	r = d.Before(answer.With(context.Background(), &raw), 1, "message.send.before", []byte(`{}`))
	assert.ErrorIs(t, r.Err, callback.ErrBadAnswer)
	assert.Equal(t, "not json", string(raw), "an answer that is not the protocol's is kept too")

	status, raw = 500, nil
	d.Before(answer.With(context.Background(), &raw), 1, "message.send.before", []byte(`{}`))
	assert.Nil(t, raw, "no 2xx answer was read")
}

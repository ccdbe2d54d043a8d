package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
	"github.com/imcallback/callback/natsqueue"
	"github.com/imcallback/callback/tencent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// protocols are the callback protocols the demo runs on, each signed.
var protocols = []struct {
	proto  callback.Protocol
	secret string
}{
	{callback.Tencent, newSecret(callback.Tencent)},
	{callback.AppCommand, newSecret(callback.AppCommand)},
}

// chatEnv is a running demo: App backend, Dispatcher and chat server.
type chatEnv struct {
	proto  callback.Protocol
	app    *appBackend
	appURL string
	d      *callback.Dispatcher
	chat   *server
	imURL  string           // http://host of the chat server
	url    string           // ws://host/ws
	queue  *natsqueue.Queue // the durable queue; nil: the memory queue
}

// newChatEnv starts the demo as run -memory does, with the demo's
// Dispatcher configuration, which each of tune may change (and the App
// backend's slowDelay) before anything starts.
func newChatEnv(t *testing.T, proto callback.Protocol, secret string, tune ...func(*callback.Config, *appBackend)) *chatEnv {
	t.Helper()
	return startEnv(t, proto, secret, false, tune...)
}

// newDurableEnv starts the demo as run does by default: on the embedded
// durable queue, in a directory of the test's.
func newDurableEnv(t *testing.T, proto callback.Protocol, secret string, tune ...func(*callback.Config, *appBackend)) *chatEnv {
	t.Helper()
	return startEnv(t, proto, secret, true, tune...)
}

func startEnv(t *testing.T, proto callback.Protocol, secret string, durable bool, tune ...func(*callback.Config, *appBackend)) *chatEnv {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	app, err := newAppBackend(proto, secret, logger)
	require.NoError(t, err)
	appSrv := httptest.NewServer(app)
	var q *natsqueue.Queue
	if durable {
		q, err = openQueue(context.Background(), t.TempDir(), logger)
		require.NoError(t, err)
	}
	cfg := dispatcherConfig(appSrv.URL+"/callback", proto, secret, logger, q)
	for _, f := range tune {
		f(&cfg, app)
	}
	d, err := callback.New(cfg)
	require.NoError(t, err)
	chat := newServer(d, appID, logger, app.mode, storeOf(q))
	imSrv := httptest.NewServer(newMux(chat, app))
	t.Cleanup(func() {
		chat.closeAll()
		imSrv.Close()
		require.NoError(t, app.setMode(modeHealthy)) // so that Close can deliver what is queued
		assert.NoError(t, closeDispatcher(d))
		appSrv.Close()
	})
	return &chatEnv{proto: proto, app: app, appURL: appSrv.URL + "/callback", d: d, chat: chat, imURL: imSrv.URL,
		url: "ws" + strings.TrimPrefix(imSrv.URL, "http") + "/ws", queue: q}
}

func closeDispatcher(d *callback.Dispatcher) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.Close(ctx)
}

// forEachProtocol runs test on a fresh demo for each protocol.
func forEachProtocol(t *testing.T, test func(t *testing.T, e *chatEnv)) {
	for _, p := range protocols {
		t.Run(p.proto.String(), func(t *testing.T) { test(t, newChatEnv(t, p.proto, p.secret)) })
	}
}

// client is a real websocket client of the chat server.
type client struct {
	t *testing.T
	c *websocket.Conn

	pending []frame // chat frames read while waiting for panel ones
	panel   []frame // panel frames read while waiting for chat ones

	seen    map[string][]callbackEntry // the callback records read so far, by webhook-id
	lastSeq uint64                     // of the last record read
}

func (e *chatEnv) login(t *testing.T, name string) *client {
	t.Helper()
	return e.dial(t, name, "")
}

// watch logs in with the callbacks panel, as the page does.
func (e *chatEnv) watch(t *testing.T, name string) *client {
	t.Helper()
	return e.dial(t, name, "&panel=1")
}

func (e *chatEnv) dial(t *testing.T, name, query string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.url+"?name="+name+query, nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.CloseNow() })
	cl := &client{t: t, c: c, seen: map[string][]callbackEntry{}}
	assert.Equal(t, frame{Type: "welcome", To: name}, cl.next())
	return cl
}

func (c *client) send(f frame) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(c.t, wsjson.Write(ctx, c.c, f))
}

// isPanel reports whether f is one of the panel's frames, which come at
// their own pace between the chat's.
func isPanel(f frame) bool {
	return f.Type == "callbacks" || f.Type == "note" || f.Type == "status"
}

// read returns the next frame of any kind, failing after wait. It notes
// the callback records in c.seen, and checks they come in order, once.
func (c *client) read(wait time.Duration) frame {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var f frame
	require.NoError(c.t, wsjson.Read(ctx, c.c, &f), "waiting for a frame")
	for _, e := range f.Callbacks {
		assert.Greater(c.t, e.Seq, c.lastSeq, "records must come in Seq order, each once: %+v", e)
		c.lastSeq = e.Seq
		c.seen[e.EventID] = append(c.seen[e.EventID], e)
	}
	return f
}

// waitCallbacks reads frames until have is true of the callback records
// read so far, and returns them by webhook-id; the other frames read are
// kept for next and waitPanel. It fails after 10 s.
func (c *client) waitCallbacks(what string, have func(seen map[string][]callbackEntry) bool) map[string][]callbackEntry {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !have(c.seen) {
		wait := time.Until(deadline)
		if wait <= 0 {
			c.t.Fatalf("no %s within 10 s; records: %+v", what, c.seen)
		}
		f := c.read(wait)
		if isPanel(f) {
			c.panel = append(c.panel, f)
		} else {
			c.pending = append(c.pending, f)
		}
	}
	return c.seen
}

// last returns the latest record of id, as the page shows it: of its
// records of the latest replay with the highest attempt number, the last.
// (After records an event's acceptance, attempt 0, once the queue has it,
// so a worker may record the first attempt before it; a replay starts
// again at attempt 1.) The zero entry if none.
func last(seen map[string][]callbackEntry, id string) callbackEntry {
	var latest callbackEntry
	for _, e := range seen[id] {
		if e.Replay > latest.Replay || e.Replay == latest.Replay && e.Attempt >= latest.Attempt {
			latest = e
		}
	}
	return latest
}

// next returns the next chat frame the client receives, failing after 5 s;
// it skips the panel's frames.
func (c *client) next() frame {
	c.t.Helper()
	if len(c.pending) > 0 {
		f := c.pending[0]
		c.pending = c.pending[1:]
		return f
	}
	for {
		f := c.read(5 * time.Second)
		if !isPanel(f) {
			return f
		}
		c.panel = append(c.panel, f)
	}
}

// waitPanel reads panel frames until ok returns true for one, and returns
// it; the chat frames read meanwhile are kept for next. It fails after
// 10 s (generous: the feed polls every 200 ms).
func (c *client) waitPanel(what string, ok func(frame) bool) frame {
	c.t.Helper()
	for i, f := range c.panel {
		if ok(f) {
			c.panel = c.panel[i+1:]
			return f
		}
	}
	c.panel = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		wait := time.Until(deadline)
		require.Positive(c.t, wait, "no panel frame with %s within 10 s", what)
		f := c.read(wait)
		switch {
		case !isPanel(f):
			c.pending = append(c.pending, f)
		case ok(f):
			return f
		}
	}
}

// waitAfters waits until the App backend has received n after-callbacks.
func (e *chatEnv) waitAfters(t *testing.T, n int) []afterEvent {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if got := e.app.received(); len(got) >= n {
			return got
		}
		select {
		case <-e.app.notify:
		case <-deadline:
			t.Fatalf("got %d after-callbacks, want %d", len(e.app.received()), n)
		}
	}
}

// assertAfter checks an after-callback: its command and body are the
// seed's or, on Tencent, Tencent's names and documented fields (EventTime,
// a time in milliseconds, is checked apart).
func (e *chatEnv) assertAfter(t *testing.T, got afterEvent, seedCmd, seedBody, tencentCmd, tencentBody string) {
	t.Helper()
	if e.proto != callback.Tencent {
		assert.Equal(t, seedCmd, got.Command)
		assert.JSONEq(t, seedBody, got.Body)
		return
	}
	assert.Equal(t, tencentCmd, got.Command)
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(got.Body), &fields))
	ms, ok := fields["EventTime"].(float64)
	assert.True(t, ok && ms > 1.6e12, "EventTime in ms: %v", fields["EventTime"])
	delete(fields, "EventTime")
	rest, _ := json.Marshal(fields)
	assert.JSONEq(t, tencentBody, string(rest))
}

func TestChatMessages(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *chatEnv) {
		alice, bob := e.login(t, "alice"), e.login(t, "bob")

		// Allowed: delivered as sent, then reported after.
		alice.send(frame{Type: "send", To: "bob", Text: "hello bob"})
		assert.Equal(t, frame{Type: "message", ID: "m1", From: "alice", To: "bob", Text: "hello bob"}, bob.next())
		assert.Equal(t, frame{Type: "sent", ID: "m1", Text: "hello bob"}, alice.next())
		afters := e.waitAfters(t, 1)
		e.assertAfter(t, afters[0],
			cmdSendAfter, `{"fromId":"alice","toId":"bob","text":"hello bob"}`,
			tencent.C2CAfterSendMsg, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"alice","To_Account":"bob",`+
				`"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello bob"}}]}`)

		// Denied: the sender gets the App's code and message; bob gets nothing.
		alice.send(frame{Type: "send", To: "bob", Text: "cheap spam here"})
		assert.Equal(t, frame{Type: "error", ID: "m2", Code: codeBanned, Msg: "message contains a banned word: spam"}, alice.next())

		// Dropped: Tencent can say so, and the sender is told "sent" as if
		// it went out. Seed cannot: the App's drop arrives as a deny.
		alice.send(frame{Type: "send", To: "bob", Text: "psst, bob"})
		if e.proto == callback.Tencent {
			assert.Equal(t, frame{Type: "sent", ID: "m3", Text: "psst, bob"}, alice.next(), "a dropped message looks sent to its sender")
		} else {
			assert.Equal(t, frame{Type: "error", ID: "m3", Code: 403, Msg: "dropped"}, alice.next(), "seed answers a drop as a deny")
		}

		// Rewritten: bob gets the App's text, and so does the after-callback.
		alice.send(frame{Type: "send", To: "bob", Text: "Darn, the heck"})
		assert.Equal(t, frame{Type: "message", ID: "m4", From: "alice", To: "bob", Text: "D***, the h***"}, bob.next(),
			"the next frame bob gets must be the rewritten message, not the denied or dropped one")
		assert.Equal(t, frame{Type: "sent", ID: "m4", Text: "D***, the h***"}, alice.next())
		afters = e.waitAfters(t, 2)
		e.assertAfter(t, afters[1],
			cmdSendAfter, `{"fromId":"alice","toId":"bob","text":"D***, the h***"}`,
			tencent.C2CAfterSendMsg, `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"alice","To_Account":"bob",`+
				`"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"D***, the h***"}}]}`)

		// Every queued after-callback delivered: none for the denied or
		// dropped message.
		require.NoError(t, closeDispatcher(e.d))
		assert.Len(t, e.app.received(), 2, "denied and dropped messages must not be reported after")
	})
}

func TestChatDropInGroup(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret)
	alice, bob := e.login(t, "alice"), e.login(t, "bob")
	alice.send(frame{Type: "create_group", Group: "g", Members: []string{"bob"}})
	alice.next()
	bob.next()
	e.waitAfters(t, 1) // group.create.after

	alice.send(frame{Type: "send", Group: "g", Text: "psst, all"})
	assert.Equal(t, frame{Type: "sent", ID: "m2", Text: "psst, all"}, alice.next())
	alice.send(frame{Type: "send", Group: "g", Text: "hi all"})
	assert.Equal(t, frame{Type: "message", ID: "m3", From: "alice", Group: "g", Text: "hi all"}, bob.next(),
		"bob's next frame must be the allowed message: the dropped one reaches nobody")
	assert.Equal(t, frame{Type: "sent", ID: "m3", Text: "hi all"}, alice.next())
	e.waitAfters(t, 2) // the server calls After once it has told the sender
	require.NoError(t, closeDispatcher(e.d))
	afters := e.app.received()
	require.Len(t, afters, 2, "one after for the group, one for the allowed message")
	e.assertAfter(t, afters[1], "", "", tencent.GroupAfterSendMsg,
		`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"g","Type":"Public","From_Account":"alice","Operator_Account":"alice",`+
			`"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi all"}}]}`)
}

func TestChatAppVerifiesSignatures(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *chatEnv) {
		res, err := http.Post(e.appURL+"?appId=1&command=message.send.before&SdkAppid=1&CallbackCommand=message.send.before",
			"application/json", strings.NewReader(`{"fromId":"mallory","toId":"bob","text":"forged"}`))
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "an unsigned callback must be refused")
	})
}

func TestChatGroups(t *testing.T) {
	forEachProtocol(t, testChatGroups)
}

func testChatGroups(t *testing.T, e *chatEnv) {
	alice, bob, carol := e.login(t, "alice"), e.login(t, "bob"), e.login(t, "carol")

	// The App refuses bots: they are left out of the group.
	alice.send(frame{Type: "create_group", Group: "g1", Members: []string{"bob", "bot-7"}})
	want := frame{Type: "group", ID: "op1", Group: "g1", Members: []string{"alice", "bob"}, Refused: []string{"bot-7"}}
	assert.Equal(t, want, alice.next())
	assert.Equal(t, want, bob.next())
	afters := e.waitAfters(t, 1)
	e.assertAfter(t, afters[0],
		cmdCreateAfter, `{"groupId":"g1","operator":"alice","members":["alice","bob"]}`,
		tencent.GroupAfterCreateGroup, `{"CallbackCommand":"Group.CallbackAfterCreateGroup","GroupId":"g1","Type":"Public","Name":"g1",`+
			`"Operator_Account":"alice","Owner_Account":"alice","MemberList":[{"Member_Account":"alice"},{"Member_Account":"bob"}]}`)

	bob.send(frame{Type: "add_members", Group: "g1", Members: []string{"carol"}})
	want = frame{Type: "group", ID: "op2", Group: "g1", Members: []string{"alice", "bob", "carol"}}
	for _, c := range []*client{alice, bob, carol} {
		assert.Equal(t, want, c.next())
	}
	afters = e.waitAfters(t, 2)
	e.assertAfter(t, afters[1],
		cmdMemberAddAfter, `{"groupId":"g1","operator":"bob","members":["carol"]}`,
		tencent.GroupAfterNewMemberJoin, `{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"g1","Type":"Public",`+
			`"JoinType":"Invited","Operator_Account":"bob","NewMemberList":[{"Member_Account":"carol"}]}`)

	carol.send(frame{Type: "send", Group: "g1", Text: "hi all"})
	msg := frame{Type: "message", ID: "m3", From: "carol", Group: "g1", Text: "hi all"}
	assert.Equal(t, msg, alice.next())
	assert.Equal(t, msg, bob.next())
	assert.Equal(t, frame{Type: "sent", ID: "m3", Text: "hi all"}, carol.next())

	// Outsiders cannot post to or add to the group.
	dave := e.login(t, "dave")
	dave.send(frame{Type: "send", Group: "g1", Text: "let me in"})
	assert.Equal(t, "error", dave.next().Type)
	dave.send(frame{Type: "add_members", Group: "g1", Members: []string{"dave"}})
	assert.Equal(t, frame{Type: "error", Code: 403, Msg: "not a member of g1"}, dave.next())
}

func TestChatRejectsBadInput(t *testing.T) {
	e := newChatEnv(t, protocols[0].proto, protocols[0].secret)
	alice := e.login(t, "alice")

	alice.send(frame{Type: "send", Text: "to nobody"})
	assert.Equal(t, 400, alice.next().Code)
	alice.send(frame{Type: "teleport"})
	assert.Equal(t, 400, alice.next().Code)

	// A second session with a taken name is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.url+"?name=alice", nil)
	require.NoError(t, err)
	defer c.CloseNow()
	_, _, err = c.Read(ctx)
	assert.Equal(t, websocket.StatusPolicyViolation, websocket.CloseStatus(err))

	// Not JSON: the session ends, the server keeps running.
	require.NoError(t, alice.c.Write(ctx, websocket.MessageText, []byte("not json")))
	_, _, err = alice.c.Read(ctx)
	assert.Error(t, err)
	bob := e.login(t, "bob")
	bob.send(frame{Type: "send", To: "bob", Text: "note to self"})
	got := bob.next()
	assert.Equal(t, "sent", got.Type)
}

func TestMaskWord(t *testing.T) {
	for in, want := range map[string]string{
		"darn":           "d***",
		"DARN it, darn!": "D*** it, d***!",
		"nothing rude":   "nothing rude",
		"":               "",
	} {
		assert.Equal(t, want, maskWord(in, "darn"), "maskWord(%q)", in)
	}
}

// Frames are JSON both ways; their field names are the page's contract.
func TestFrameJSON(t *testing.T) {
	b, err := json.Marshal(frame{Type: "error", Code: 40001, Msg: "no"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"error","code":40001,"msg":"no"}`, string(b))
}

// setMode presses one of the page's App backend buttons.
func (e *chatEnv) setMode(t *testing.T, mode string) *http.Response {
	t.Helper()
	res, err := http.Post(e.imURL+"/app/mode", "application/json", strings.NewReader(`{"mode":"`+mode+`"}`))
	require.NoError(t, err)
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// fastRetries makes After retry within milliseconds and the breaker probe
// after 300 ms, so that a test sees a whole outage in a second or two.
func fastRetries(cfg *callback.Config, _ *appBackend) {
	cfg.RetryWaitMin, cfg.RetryWaitMax, cfg.Retries = 20*time.Millisecond, 100*time.Millisecond, 1000
	cfg.Breaker.Cooldown = 300 * time.Millisecond
}

func statusIs(want func(panelStatus) bool) func(frame) bool {
	return func(f frame) bool { return f.Type == "status" && want(*f.Status) }
}

func noteOf(id string) func(frame) bool {
	return func(f frame) bool { return f.Type == "note" && f.ID == id }
}

func TestChatAppModeEndpoint(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret)
	res := e.setMode(t, modeSlow)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	body, _ := io.ReadAll(res.Body)
	assert.JSONEq(t, `{"mode":"slow"}`, string(body))
	assert.Equal(t, modeSlow, e.app.mode())

	for _, bad := range []string{`{"mode":"asleep"}`, `not json`} {
		res, err := http.Post(e.imURL+"/app/mode", "application/json", strings.NewReader(bad))
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		assert.Equal(t, http.StatusBadRequest, res.StatusCode, "POST %s: %s", bad, body)
	}
	assert.Equal(t, modeSlow, e.app.mode(), "a bad request must leave the mode alone")

	res, err := http.Get(e.imURL + "/app/mode")
	require.NoError(t, err)
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	assert.JSONEq(t, `{"mode":"slow"}`, string(body))
}

// TestChatAppDown: with the App backend down, Before fails open (the
// message is delivered, and the panel says the Dispatcher decided), the
// After event is held and retried while the breaker opens, and once the
// App is healthy again it is delivered and the breaker closes.
func TestChatAppDown(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret, fastRetries, func(cfg *callback.Config, _ *appBackend) {
		cfg.Breaker.Cooldown = 3 * time.Second // long enough to see Before refused by the open breaker
	})
	alice, bob := e.watch(t, "alice"), e.login(t, "bob")
	alice.waitPanel("the App healthy", statusIs(func(s panelStatus) bool { return s.App == modeHealthy }))

	require.Equal(t, http.StatusOK, e.setMode(t, modeDown).StatusCode)
	alice.waitPanel("the App down", statusIs(func(s panelStatus) bool { return s.App == modeDown }))

	alice.send(frame{Type: "send", To: "bob", Text: "are you there, spam?"})
	assert.Equal(t, frame{Type: "message", ID: "m1", From: "alice", To: "bob", Text: "are you there, spam?"}, bob.next(),
		"Before fails open: even a message the App would deny is delivered")
	assert.Equal(t, frame{Type: "sent", ID: "m1", Text: "are you there, spam?"}, alice.next())
	assert.Contains(t, alice.waitPanel("m1's note", noteOf("m1/before")).Text, "failed open")
	seen := alice.waitCallbacks("m1's Before failed open and its After retried", func(seen map[string][]callbackEntry) bool {
		return last(seen, "m1/before").Outcome == "failed-open" && last(seen, "m1/after").Outcome == "retrying"
	})
	b := last(seen, "m1/before")
	assert.Equal(t, "dispatcher", b.By, "the panel must say the Dispatcher decided, not the App")
	assert.Equal(t, http.StatusServiceUnavailable, b.Status)
	assert.Contains(t, b.Error, "503")

	alice.waitPanel("the breaker open and m1/after held", statusIs(func(s panelStatus) bool { return s.Breaker == "open" && s.Queued == 1 }))
	assert.Empty(t, e.app.received(), "the App is down: nothing delivered")

	// The breaker is open: Before fails at once, without a request.
	alice.send(frame{Type: "send", To: "bob", Text: "still there?"})
	assert.Equal(t, "m2", bob.next().ID)
	assert.Equal(t, frame{Type: "sent", ID: "m2", Text: "still there?"}, alice.next())
	seen = alice.waitCallbacks("m2's Before", func(seen map[string][]callbackEntry) bool { return len(seen["m2/before"]) > 0 })
	b = last(seen, "m2/before")
	assert.Equal(t, "failed-open", b.Outcome)
	assert.Contains(t, b.Error, "circuit breaker open")
	assert.Zero(t, b.Status, "no request was sent")

	require.Equal(t, http.StatusOK, e.setMode(t, modeHealthy).StatusCode)
	afters := e.waitAfters(t, 2)
	assert.Equal(t, tencent.C2CAfterSendMsg, afters[0].Command, "the held After events are delivered once the App is back")
	seen = alice.waitCallbacks("m1/after and m2/after delivered", func(seen map[string][]callbackEntry) bool {
		return last(seen, "m1/after").Outcome == "delivered" && last(seen, "m2/after").Outcome == "delivered"
	})
	m1 := seen["m1/after"]
	assert.True(t, slices.ContainsFunc(m1, func(e callbackEntry) bool { return e.Outcome == "queued" && e.Attempt == 0 }),
		"an After event's story has its acceptance: %+v", m1)
	assert.Greater(t, last(seen, "m1/after").Attempt, 1, "m1/after was retried: %+v", m1)
	assert.Equal(t, http.StatusOK, last(seen, "m1/after").Status)
	alice.waitPanel("the breaker closed and the queue empty", statusIs(func(s panelStatus) bool {
		return s.App == modeHealthy && s.Breaker == "closed" && s.Queued == 0
	}))

	// Healthy again: the App decides.
	alice.send(frame{Type: "send", To: "bob", Text: "spam again"})
	assert.Equal(t, frame{Type: "error", ID: "m3", Code: codeBanned, Msg: "message contains a banned word: spam"}, alice.next())
	assert.Contains(t, alice.waitPanel("m3's note", noteOf("m3/before")).Text, "the App backend decided; denied")
	seen = alice.waitCallbacks("m3's Before", func(seen map[string][]callbackEntry) bool { return len(seen["m3/before"]) > 0 })
	assert.Equal(t, callbackEntry{Outcome: "denied", By: "app", Status: 200}, pick(last(seen, "m3/before")))
}

// pick keeps the fields of e that say what happened.
func pick(e callbackEntry) callbackEntry {
	return callbackEntry{Outcome: e.Outcome, By: e.By, Status: e.Status, Error: e.Error}
}

// TestChatPanel: a session with the panel gets every callback of the
// chat, as the attempt log records them, with the webhook-ids of the
// messages' ids, marked as the App's decisions, and a note on each Before
// answer (masked, dropped); a session that joins later gets the history.
func TestChatPanel(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret)
	alice, bob := e.watch(t, "alice"), e.login(t, "bob")
	for _, text := range []string{"hello", "spam", "psst", "darn"} {
		alice.send(frame{Type: "send", To: "bob", Text: text})
		alice.next()
	}
	seen := alice.waitCallbacks("every callback of m1-m4", func(seen map[string][]callbackEntry) bool {
		return len(seen["m4/before"]) > 0 && last(seen, "m1/after").Outcome == "delivered" && last(seen, "m4/after").Outcome == "delivered"
	})
	want := map[string]callbackEntry{
		"m1/before": {Outcome: "allowed", By: "app", Status: 200},
		"m2/before": {Outcome: "denied", By: "app", Status: 200},
		"m3/before": {Outcome: "dropped", By: "app", Status: 200},
		"m4/before": {Outcome: "allowed", By: "app", Status: 200},
		"m1/after":  {Outcome: "delivered", Status: 200},
		"m4/after":  {Outcome: "delivered", Status: 200},
	}
	for id, w := range want {
		got := last(seen, id)
		assert.Equal(t, w, pick(got), "%s: %+v", id, seen[id])
		assert.Equal(t, id[strings.Index(id, "/")+1:], got.Kind, id)
		assert.Positive(t, got.LatencyMS, "%s: latency", id)
		at, err := time.ParseInLocation(inspector.TimeFormat, got.Time, time.Local)
		if assert.NoError(t, err, "%s: %q is not in local time with its zone, as inspector.TimeFormat", id, got.Time) {
			zone, _ := time.Now().Zone()
			assert.Contains(t, got.Time, " "+zone, id)
			assert.WithinDuration(t, time.Now(), at, time.Hour, "%s: %q", id, got.Time)
		}
	}
	assert.Equal(t, tencent.C2CBeforeSendMsg, last(seen, "m1/before").Command)
	assert.Equal(t, tencent.C2CAfterSendMsg, last(seen, "m1/after").Command)
	for _, id := range []string{"m2/after", "m3/after"} {
		assert.Empty(t, seen[id], "a denied or dropped message has no After")
	}

	notes := map[string]frame{}
	for len(notes) < 4 {
		n := alice.waitPanel("a note", func(f frame) bool { return f.Type == "note" })
		notes[n.ID] = n
	}
	for id, effect := range map[string]string{"m1/before": "delivered", "m2/before": "denied", "m3/before": "dropped", "m4/before": "masked"} {
		assert.Equal(t, effect, notes[id].Effect, "%s: %+v", id, notes[id])
		assert.True(t, strings.HasPrefix(notes[id].Text, "the App backend decided; "+effect), "%s: %q", id, notes[id].Text)
	}
	assert.Contains(t, notes["m4/before"].Text, `"d***"`)

	// Bob has no panel: he got only chat frames.
	assert.Equal(t, frame{Type: "message", ID: "m1", From: "alice", To: "bob", Text: "hello"}, bob.next())

	// Carol joins later: she gets the records so far at once, each once.
	carol := e.watch(t, "carol")
	got := carol.waitCallbacks("the history", func(seen map[string][]callbackEntry) bool { return last(seen, "m4/after").Outcome == "delivered" })
	for id, w := range want {
		assert.Equal(t, w, pick(last(got, id)), id)
	}
}

// TestChatAppSlow: an App slower than the Dispatcher's timeout makes
// Before fail open after the timeout.
func TestChatAppSlow(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret, fastRetries, func(cfg *callback.Config, app *appBackend) {
		cfg.Timeout = 200 * time.Millisecond
		app.slowDelay = time.Minute
	})
	alice, bob := e.watch(t, "alice"), e.login(t, "bob")
	require.Equal(t, http.StatusOK, e.setMode(t, modeSlow).StatusCode)

	start := time.Now()
	alice.send(frame{Type: "send", To: "bob", Text: "psst, slow"})
	assert.Equal(t, frame{Type: "message", ID: "m1", From: "alice", To: "bob", Text: "psst, slow"}, bob.next(),
		"Before fails open at the timeout: the message the App would drop is delivered")
	assert.Less(t, time.Since(start), 20*time.Second, "Before must give up at its 200 ms timeout, not wait for the App's minute")
	assert.Contains(t, alice.waitPanel("m1's note", noteOf("m1/before")).Text, "failed open")

	require.Equal(t, http.StatusOK, e.setMode(t, modeHealthy).StatusCode)
	e.waitAfters(t, 1)
}

// TestChatPanelGroupNote: the App's refusal of some members is an allowed
// Before whose note says whom it left out.
func TestChatPanelGroupNote(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *chatEnv) {
		alice := e.watch(t, "alice")
		alice.send(frame{Type: "create_group", Group: "g1", Members: []string{"bob", "bot-7"}})
		assert.Equal(t, "op1", alice.next().ID)
		n := alice.waitPanel("op1's note", noteOf("op1/before"))
		assert.Equal(t, frame{Type: "note", ID: "op1/before", Effect: "refused", Text: "the App backend decided; refused: left out bot-7"}, n)
		seen := alice.waitCallbacks("op1's callbacks", func(seen map[string][]callbackEntry) bool {
			return len(seen["op1/before"]) > 0 && last(seen, "op1/after").Outcome == "delivered"
		})
		assert.Equal(t, callbackEntry{Outcome: "allowed", By: "app", Status: 200}, pick(last(seen, "op1/before")))
	})
}

// TestChatInspector: the demo mounts the inspector at /inspector/, where
// a message's webhook-ids tell its story, and serves a page with a
// viewport and a link to it.
func TestChatInspector(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret)
	alice := e.login(t, "alice")
	alice.send(frame{Type: "send", To: "alice", Text: "note to self"})
	assert.Equal(t, "m1", alice.next().ID)
	e.waitAfters(t, 1)
	get := func(path string) []byte {
		t.Helper()
		res, err := http.Get(e.imURL + path)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode, "GET %s: %s", path, body)
		return body
	}
	// The App has the After; the Dispatcher records the attempt once it
	// has read the answer.
	var story inspector.EventResponse
	deadline := time.Now().Add(10 * time.Second)
	for {
		story = inspector.EventResponse{}
		require.NoError(t, json.Unmarshal(get("/inspector/api/event?id=m1%2Fafter"), &story))
		if n := len(story.Attempts); n > 0 && story.Attempts[n-1].Outcome == callback.OutcomeDelivered {
			break
		}
		require.True(t, time.Now().Before(deadline), "the inspector must show m1/after delivered within 10 s: %+v", story)
		time.Sleep(20 * time.Millisecond) // polling a condition, with the deadline above
	}
	require.NoError(t, json.Unmarshal(get("/inspector/api/event?id=m1%2Fbefore"), &story))
	require.Len(t, story.Attempts, 1, "%+v", story)
	assert.Equal(t, callback.OutcomeAllowed, story.Attempts[0].Outcome)
	assert.Contains(t, string(get("/inspector/?id=m1%2Fafter")), "m1/after")

	page := string(get("/"))
	assert.Contains(t, page, `<meta name="viewport" content="width=device-width, initial-scale=1">`)
	assert.Contains(t, page, `href="/inspector/"`)
}

// TestChatOrderKeys: each conversation's after-callbacks go under its
// order key (the group, or the pair of users of a direct message, the
// same both ways), the panel shows the key, and with the App down the
// conversation's second message waits for its first and reaches the App
// after it.
func TestChatOrderKeys(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret, fastRetries)
	alice, bob := e.watch(t, "alice"), e.login(t, "bob")
	alice.waitPanel("the App healthy", statusIs(func(s panelStatus) bool { return s.App == modeHealthy }))

	alice.send(frame{Type: "create_group", Group: "g1", Members: []string{"bob"}})
	assert.Equal(t, "group", alice.next().Type)
	assert.Equal(t, "group", bob.next().Type)
	alice.send(frame{Type: "send", Group: "g1", Text: "hello group"})
	assert.Equal(t, "message", bob.next().Type)
	assert.Equal(t, "sent", alice.next().Type)
	e.waitAfters(t, 2)

	require.Equal(t, http.StatusOK, e.setMode(t, modeDown).StatusCode)
	alice.waitPanel("the App down", statusIs(func(s panelStatus) bool { return s.App == modeDown }))
	alice.send(frame{Type: "send", To: "bob", Text: "first"})
	assert.Equal(t, "message", bob.next().Type)
	assert.Equal(t, "sent", alice.next().Type)
	bob.send(frame{Type: "send", To: "alice", Text: "second"})
	assert.Equal(t, "sent", bob.next().Type)
	seen := alice.waitCallbacks("m4/after queued behind m3/after", func(seen map[string][]callbackEntry) bool {
		return slices.ContainsFunc(seen["m4/after"], func(e callbackEntry) bool { return e.Outcome == "queued" }) &&
			len(seen["m3/after"]) > 0
	})
	queued := seen["m4/after"][slices.IndexFunc(seen["m4/after"], func(e callbackEntry) bool { return e.Outcome == "queued" })]
	assert.Equal(t, "m3/after", queued.WaitsFor, "the conversation's second message waits for its first")
	require.Equal(t, http.StatusOK, e.setMode(t, modeHealthy).StatusCode)

	seen = alice.waitCallbacks("m3/after and m4/after delivered", func(seen map[string][]callbackEntry) bool {
		return last(seen, "m3/after").Outcome == "delivered" && last(seen, "m4/after").Outcome == "delivered"
	})
	for id, key := range map[string]string{"op1/after": "group:g1", "m2/after": "group:g1", "m3/after": "dm:alice|bob", "m4/after": "dm:alice|bob"} {
		for _, r := range seen[id] {
			assert.Equal(t, key, r.OrderKey, "%s: %+v", id, r)
		}
	}
	afters := e.waitAfters(t, 4)
	assert.Contains(t, afters[2].Body, "first")
	assert.Contains(t, afters[3].Body, "second", "the App hears the conversation in its order")
	assert.Len(t, afters, 4)
}

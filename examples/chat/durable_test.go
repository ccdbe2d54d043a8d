package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

// fastSchedule makes the durable queue's After give up after 3 attempts
// 20 ms apart, and the breaker probe after 300 ms.
func fastSchedule(cfg *callback.Config, _ *appBackend) {
	cfg.RetrySchedule = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}
	cfg.Breaker.Cooldown = 300 * time.Millisecond
}

// post sends a JSON body to the chat server.
func (e *chatEnv) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	res, err := http.Post(e.imURL+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// TestChatDeadLetterReplay: on the durable queue (the demo's default), an
// After the App backend does not take is dead-lettered and kept; the
// panel shows it dead-lettered and counts it; POST /replay puts it back,
// and the panel shows the replay's records marked as a replay, its newest
// state delivered at attempt 1. Fails before the durable queue: the
// memory queue keeps no dead letter and there is no /replay.
func TestChatDeadLetterReplay(t *testing.T) {
	e := newDurableEnv(t, callback.Tencent, protocols[0].secret, fastSchedule)
	alice, bob := e.watch(t, "alice"), e.login(t, "bob")
	alice.waitPanel("the durable queue", statusIs(func(s panelStatus) bool { return s.Durable && s.Dead == 0 }))

	require.Equal(t, http.StatusOK, e.setMode(t, modeDown).StatusCode)
	alice.send(frame{Type: "send", To: "bob", Text: "hello"})
	assert.Equal(t, "m1", bob.next().ID, "Before fails open")
	seen := alice.waitCallbacks("m1/after dead-lettered", func(seen map[string][]callbackEntry) bool {
		return last(seen, "m1/after").Outcome == "dead-lettered"
	})
	dl := last(seen, "m1/after")
	assert.Equal(t, 3, dl.Attempt, "3 attempts, then the dead letter: %+v", seen["m1/after"])
	assert.Equal(t, "the App backend answered 503 Service Unavailable", dl.Explain)
	assert.Contains(t, dl.Error, "503", "the raw error is kept beside the plain one")
	alice.waitPanel("the dead letter counted", statusIs(func(s panelStatus) bool { return s.Dead == 1 }))

	code, body := e.post(t, "/replay", `{"id":"m1/after"}`)
	assert.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"replayed":"m1/after"}`, body)
	seen = alice.waitCallbacks("m1/after's replay failing", func(seen map[string][]callbackEntry) bool {
		return last(seen, "m1/after").Replay == 1
	})
	for _, r := range seen["m1/after"] {
		if r.Replay == 1 {
			assert.Equal(t, 1, r.Attempt, "a replay starts again at attempt 1: %+v", seen["m1/after"])
			break
		}
	}

	// Replayed while the App is down, it is dead-lettered again; healthy,
	// the second replay is delivered.
	alice.waitCallbacks("the replay dead-lettered", func(seen map[string][]callbackEntry) bool {
		l := last(seen, "m1/after")
		return l.Replay == 1 && l.Outcome == "dead-lettered"
	})
	alice.waitPanel("the dead letter back", statusIs(func(s panelStatus) bool { return s.Dead == 1 }))
	require.Equal(t, http.StatusOK, e.setMode(t, modeHealthy).StatusCode)
	code, body = e.post(t, "/replay", `{"id":"m1/after"}`)
	require.Equal(t, http.StatusOK, code, body)
	seen = alice.waitCallbacks("the second replay delivered", func(seen map[string][]callbackEntry) bool {
		return last(seen, "m1/after").Outcome == "delivered"
	})
	assert.Equal(t, callbackEntry{Outcome: "delivered", Status: 200}, pick(last(seen, "m1/after")))
	assert.Equal(t, 2, last(seen, "m1/after").Replay, "%+v", seen["m1/after"])
	assert.Equal(t, 1, last(seen, "m1/after").Attempt)
	alice.waitPanel("no dead letter left", statusIs(func(s panelStatus) bool { return s.Dead == 0 }))
	assert.Len(t, e.waitAfters(t, 1), 1)

	code, body = e.post(t, "/replay", `{"id":"m1/after"}`)
	assert.Equal(t, http.StatusNotFound, code, "a dead letter replays once: %s", body)
	code, body = e.post(t, "/replay", `not json`)
	assert.Equal(t, http.StatusBadRequest, code, body)
}

// TestChatLoopbackOnly: replays and the inspector answer loopback
// addresses only; the page and the chat answer anyone. Fails before: the
// inspector answered everyone, and there was no /replay.
func TestChatLoopbackOnly(t *testing.T) {
	e := newDurableEnv(t, callback.Tencent, protocols[0].secret)
	mux := newMux(e.chat, e.app)
	for _, tc := range []struct {
		method, path, remote string
		want                 int
	}{
		{"POST", "/replay", "192.0.2.7:5555", http.StatusForbidden},
		{"POST", "/replay", "[2001:db8::1]:5555", http.StatusForbidden},
		{"GET", "/inspector/", "192.0.2.7:5555", http.StatusForbidden},
		{"GET", "/inspector/api/attempts", "192.0.2.7:5555", http.StatusForbidden},
		{"POST", "/inspector/api/replay?id=m1%2Fafter", "192.0.2.7:5555", http.StatusForbidden},
		{"GET", "/", "192.0.2.7:5555", http.StatusOK},
		{"GET", "/inspector/", "127.0.0.1:5555", http.StatusOK},
		{"GET", "/inspector/", "[::1]:5555", http.StatusOK},
		{"GET", "/inspector/", "[::ffff:127.0.0.1]:5555", http.StatusOK},
		{"POST", "/replay", "127.0.0.1:5555", http.StatusNotFound}, // allowed; no such dead letter
		{"POST", "/inspector/api/replay?id=m1%2Fafter", "127.0.0.1:5555", http.StatusNotFound},
	} {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(`{"id":"m1/after"}`))
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		assert.Equal(t, tc.want, w.Code, "%s %s from %s: %s", tc.method, tc.path, tc.remote, w.Body)
	}
}

// TestChatMemoryQueue: with -memory there is no dead-letter store: the
// panel says so, and /replay explains why it cannot.
func TestChatMemoryQueue(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret)
	alice := e.watch(t, "alice")
	st := alice.waitPanel("the status", func(f frame) bool { return f.Type == "status" })
	assert.False(t, st.Status.Durable)
	code, body := e.post(t, "/replay", `{"id":"m1/after"}`)
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body, "-memory")
}

// TestChatFailClosed: with the App backend down, a message fails open
// (delivered) while group creation fails closed: refused, with an error
// that says why in words, and a note that the Dispatcher decided. Fails
// before: every command failed open.
func TestChatFailClosed(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *chatEnv) {
		alice, bob := e.watch(t, "alice"), e.login(t, "bob")
		require.Equal(t, http.StatusOK, e.setMode(t, modeDown).StatusCode)

		alice.send(frame{Type: "send", To: "bob", Text: "hi"})
		assert.Equal(t, "m1", bob.next().ID, "a message fails open")
		alice.send(frame{Type: "create_group", Group: "g1", Members: []string{"bob"}})
		got := alice.next()
		for got.Type == "sent" {
			got = alice.next()
		}
		assert.Equal(t, frame{Type: "error", ID: "op2", Code: 503,
			Msg: "the App backend could not be asked, and group creation fails closed: try again when it is back"}, got)
		n := alice.waitPanel("op2's note", noteOf("op2/before"))
		assert.Equal(t, "the callback failed, the Dispatcher failed closed; refused: the group is unchanged", n.Text)
		seen := alice.waitCallbacks("both Befores", func(seen map[string][]callbackEntry) bool {
			return len(seen["m1/before"]) > 0 && len(seen["op2/before"]) > 0
		})
		assert.Equal(t, "failed-open", last(seen, "m1/before").Outcome)
		assert.Equal(t, "failed-closed", last(seen, "op2/before").Outcome)
		assert.Equal(t, "dispatcher", last(seen, "op2/before").By)
		assert.Equal(t, "the App backend answered 503 Service Unavailable", last(seen, "op2/before").Explain)

		// The App back: the group is created.
		require.Equal(t, http.StatusOK, e.setMode(t, modeHealthy).StatusCode)
		alice.send(frame{Type: "create_group", Group: "g1", Members: []string{"bob"}})
		assert.Equal(t, frame{Type: "group", ID: "op3", Group: "g1", Members: []string{"alice", "bob"}}, alice.next())
	})
}

// TestChatUnknownUser: a message to a name nobody has logged in with is an
// error the sender sees, and asks the App nothing. Fails before: the
// sender was told "sent".
func TestChatUnknownUser(t *testing.T) {
	e := newChatEnv(t, callback.Tencent, protocols[0].secret)
	alice := e.login(t, "alice")
	alice.send(frame{Type: "send", To: "nobody", Text: "hello?"})
	assert.Equal(t, frame{Type: "error", Code: 404, Msg: "no user nobody: nobody of that name has logged in"}, alice.next())
	assert.Empty(t, e.d.Attempts(callback.AttemptQuery{}), "no callback for a message that cannot be delivered")

	// Someone who logged in once is a user, online or not.
	bob := e.login(t, "bob")
	require.NoError(t, bob.c.CloseNow())
	alice.send(frame{Type: "send", To: "bob", Text: "are you there?"})
	assert.Equal(t, "sent", alice.next().Type)
}

// TestSeedAllBotsAdded: on AppCommand, adding members who are all bots
// adds none of them: the App answers "members":[] (and an answer of
// "members":null means none too, not "no change"). Fails before: null
// was read as no change, and every bot was added.
func TestSeedAllBotsAdded(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *chatEnv) {
		alice, bob := e.login(t, "alice"), e.login(t, "bob")
		alice.send(frame{Type: "create_group", Group: "g1", Members: []string{"bob"}})
		assert.Equal(t, []string{"alice", "bob"}, alice.next().Members)
		bob.next()
		bob.send(frame{Type: "add_members", Group: "g1", Members: []string{"bot-1", "bot-2"}})
		want := frame{Type: "group", ID: "op2", Group: "g1", Members: []string{"alice", "bob"}, Refused: []string{"bot-1", "bot-2"}}
		assert.Equal(t, want, bob.next())
		assert.Equal(t, want, alice.next())
	})

	seed := dialect{callback.AppCommand}
	asked := []string{"bot-1", "bot-2"}
	for data, want := range map[string][]string{
		`{"groupId":"g1","members":null}`:      {},
		`{"groupId":"g1","members":[]}`:        {},
		`{"groupId":"g1","members":["bot-2"]}`: {"bot-2"},
		`{"groupId":"g1","members":"bot-1"}`:   {},
		`{"groupId":"g1"}`:                     asked,
		`["bot-1"]`:                            {"bot-1"},
	} {
		assert.Equal(t, want, seed.accepted(asked, json.RawMessage(data)), data)
	}
	refusal := seed.refuseMembers([]byte(`{"groupId":"g1","operator":"bob","members":["bot-1"]}`), []string{}, []string{"bot-1"})
	assert.JSONEq(t, `{"groupId":"g1","operator":"bob","members":[]}`, string(refusal))
}

// TestReplaysMarked: the records after an After event's dead letter are
// its replay's, numbered; its acceptance recorded after a first attempt
// that was dead-lettered at once is not.
func TestReplaysMarked(t *testing.T) {
	rec := func(id string, attempt int, o callback.Outcome) callback.Attempt {
		return callback.Attempt{Kind: callback.KindAfter, EventID: id, Attempt: attempt, Outcome: o, Time: time.Now()}
	}
	recs := []callback.Attempt{
		rec("a", 0, callback.OutcomeQueued), rec("a", 1, callback.OutcomeRetrying), rec("a", 2, callback.OutcomeDeadLettered),
		rec("b", 1, callback.OutcomeDeadLettered), rec("b", 0, callback.OutcomeQueued),
		rec("a", 1, callback.OutcomePostponed), rec("a", 1, callback.OutcomeDeadLettered),
		rec("a", 1, callback.OutcomeDelivered), rec("b", 1, callback.OutcomeDelivered),
		{Kind: callback.KindBefore, EventID: "c", Attempt: 1, Outcome: callback.OutcomeDenied},
	}
	var got []int
	for _, e := range entries(recs, replays{}) {
		got = append(got, e.Replay)
	}
	assert.Equal(t, []int{0, 0, 0, 0, 0, 1, 1, 2, 1, 0}, got)
	assert.Equal(t, "2006-01-02 15:04:05.000 MST", inspector.TimeFormat)
}

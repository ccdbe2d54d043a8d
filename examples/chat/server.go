package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

// frame is one websocket message, in either direction.
type frame struct {
	Type string `json:"type"` // client: send, create_group, add_members; server: welcome, message, sent, group, error, and to panel sessions callbacks, note, status
	// ID names the message or group operation (m7, op8) in message, sent,
	// group and error; its callbacks' webhook-ids are ID+"/before" and
	// ID+"/after". In a note, it is the webhook-id the note is about.
	ID      string   `json:"id,omitempty"`
	From    string   `json:"from,omitempty"`    // message: the sender
	To      string   `json:"to,omitempty"`      // 1:1 message: the receiver
	Group   string   `json:"group,omitempty"`   // group message or group operation
	Text    string   `json:"text,omitempty"`    // message text
	Members []string `json:"members,omitempty"` // group operations: members asked for, or the group's members
	Refused []string `json:"refused,omitempty"` // group: members the App refused
	Code    int      `json:"code,omitempty"`    // error: the App's code
	Msg     string   `json:"msg,omitempty"`     // error: the App's message
	Effect  string   `json:"effect,omitempty"`  // note: what the chat server did: delivered, masked, denied, dropped, accepted, refused

	Callbacks []callbackEntry `json:"callbacks,omitempty"` // callbacks: new records of the attempt log
	Status    *panelStatus    `json:"status,omitempty"`    // status: the App's mode, the breaker, the queue
}

// server is a small IM server: users log in over a websocket with a name,
// send 1:1 and group messages, create groups and add members. It asks the
// App backend before each of these and tells it after.
type server struct {
	d     *callback.Dispatcher
	appID int
	log   *slog.Logger
	dead  deadLetterStore // the durable queue's dead letters; nil with the memory queue

	ids   atomic.Uint64 // numbers messages and group operations
	panel *panel        // the callbacks panel's feed

	sessions sync.WaitGroup // websocket sessions; closeAll waits for them

	mu       sync.Mutex
	users    map[string]*websocket.Conn // online users by name
	known    map[string]bool            // every name that has logged in: the chat's users
	watchers map[string]bool            // the users who asked for the panel (?panel=1)
	groups   map[string][]string        // group members by group name
}

// deadLetterStore is the durable queue as the chat server uses it: the
// inspector's store of dead letters, and the counts the panel shows.
// *natsqueue.Queue is one.
type deadLetterStore interface {
	inspector.DeadLetterStore
	Pending(ctx context.Context) (uint64, error)     // events waiting, for an attempt or a retry
	DeadLetters(ctx context.Context) (uint64, error) // dead letters kept
}

// newServer returns the chat server on d for appID, and starts the panel's
// feed, which closeAll ends. appMode tells the panel the demo App
// backend's mode; dead is the durable queue's dead letters, nil for the
// memory queue.
func newServer(d *callback.Dispatcher, appID int, log *slog.Logger, appMode func() string, dead deadLetterStore) *server {
	s := &server{d: d, appID: appID, log: log, dead: dead, users: map[string]*websocket.Conn{}, known: map[string]bool{},
		watchers: map[string]bool{}, groups: map[string][]string{}}
	s.panel = startPanel(s, appMode)
	return s
}

// nextID names a new message ("m") or group operation ("op").
func (s *server) nextID(prefix string) string {
	return prefix + strconv.FormatUint(s.ids.Add(1), 10)
}

// ServeHTTP upgrades /ws?name=NAME to a websocket session; with panel=1
// the session also gets the callbacks panel's frames.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" || len(name) > 32 {
		http.Error(w, "log in with ?name=NAME (at most 32 bytes)", http.StatusBadRequest)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.sessions.Add(1)
	defer s.sessions.Done()
	defer c.CloseNow()
	if !s.login(name, c) {
		c.Close(websocket.StatusPolicyViolation, "name already in use")
		return
	}
	defer s.logout(name)
	s.send(r.Context(), name, frame{Type: "welcome", To: name})
	if r.URL.Query().Get("panel") == "1" {
		s.panel.join(r.Context(), name)
	}

	for {
		var f frame
		if err := wsjson.Read(r.Context(), c, &f); err != nil {
			return // the client left, or sent something that is not JSON
		}
		s.handle(r.Context(), name, f)
	}
}

// closeAll ends the panel's feed, disconnects every user and waits for
// their sessions to end. http.Server.Shutdown does not: websocket
// connections are hijacked.
func (s *server) closeAll() {
	s.panel.close()
	s.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(s.users))
	for _, c := range s.users {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close(websocket.StatusGoingAway, "server shutting down")
	}
	s.sessions.Wait()
}

func (s *server) login(name string, c *websocket.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.users[name]; taken {
		return false
	}
	s.users[name] = c
	s.known[name] = true
	return true
}

func (s *server) logout(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, name)
	delete(s.watchers, name)
}

func (s *server) handle(ctx context.Context, from string, f frame) {
	switch f.Type {
	case "send":
		s.sendMessage(ctx, from, f)
	case "create_group", "add_members":
		s.addMembers(ctx, from, f)
	default:
		s.send(ctx, from, frame{Type: "error", Code: 400, Msg: "unknown frame type " + f.Type})
	}
}

// dialect returns the commands and body shapes of the App's protocol,
// which the Dispatcher knows: the IM server asks before it builds a body.
func (s *server) dialect(ctx context.Context) dialect {
	ep, err := s.d.Endpoint(ctx, s.appID)
	if err != nil {
		// Only a Resolver can fail; Before then fails open or closed
		// whatever the body.
		return dialect{}
	}
	return dialect{ep.Protocol}
}

// sendMessage runs the message through the App's before-callback, delivers
// what the App allowed, and reports the delivered message after.
func (s *server) sendMessage(ctx context.Context, from string, f frame) {
	m := message{From: from, To: f.To, Group: f.Group, Text: f.Text}
	if (m.To == "") == (m.Group == "") || m.Text == "" {
		s.send(ctx, from, frame{Type: "error", Code: 400, Msg: "a message needs text and either to or group"})
		return
	}
	if m.Group != "" && !s.isMember(m.Group, from) {
		s.send(ctx, from, frame{Type: "error", Code: 403, Msg: "not a member of " + m.Group})
		return
	}
	if m.To != "" && !s.isUser(m.To) {
		s.send(ctx, from, frame{Type: "error", Code: 404, Msg: "no user " + m.To + ": nobody of that name has logged in"})
		return
	}
	w := s.dialect(ctx)
	group := m.Group != ""
	id := s.nextID("m")
	r := s.d.Before(callback.WithEventID(ctx, id+"/before"), s.appID, w.command(kindSendBefore, group), w.messageBody(kindSendBefore, m))
	switch r.Action {
	case callback.Deny:
		s.note(id, r, "denied", "the sender got the error, nobody received the message")
		s.send(ctx, from, frame{Type: "error", ID: id, Code: r.Code, Msg: r.Msg})
		return
	case callback.Drop:
		// The sender is told success, as for a delivered message; nobody
		// receives it and the App hears nothing after.
		s.note(id, r, "dropped", "the sender was told it was sent; nobody received it, no after-callback")
		s.send(ctx, from, frame{Type: "sent", ID: id, Text: m.Text})
		return
	}
	if text, ok := w.rewrittenText(r.Data); ok && text != "" && text != m.Text {
		// The App rewrote the message: deliver its text, to the original
		// receivers (an App cannot redirect a message).
		m.Text = text
		s.note(id, r, "masked", "delivered as "+strconv.Quote(text))
	} else {
		s.note(id, r, "delivered", "delivered as sent")
	}

	// The after-callback is queued before anyone sees the message, so a
	// reply's comes after it under the conversation's order key.
	s.after(ctx, id, conversation(m), w.command(kindSendAfter, group), w.messageBody(kindSendAfter, m))
	out := frame{Type: "message", ID: id, From: from, To: m.To, Group: m.Group, Text: m.Text}
	receivers := []string{m.To}
	if m.Group != "" {
		receivers = s.members(m.Group)
	}
	for _, to := range receivers {
		if to != from {
			s.send(ctx, to, out)
		}
	}
	s.send(ctx, from, frame{Type: "sent", ID: id, Text: m.Text})
}

// addMembers creates a group or adds members to one. The App may refuse
// some members: its data replaces the member list.
func (s *server) addMembers(ctx context.Context, from string, f frame) {
	if f.Group == "" || len(f.Members) == 0 {
		s.send(ctx, from, frame{Type: "error", Code: 400, Msg: "a group operation needs group and members"})
		return
	}
	create := f.Type == "create_group"
	s.mu.Lock()
	current, exists := s.groups[f.Group]
	s.mu.Unlock()
	switch {
	case create && exists:
		s.send(ctx, from, frame{Type: "error", Code: 409, Msg: "group " + f.Group + " exists"})
		return
	case !create && !exists:
		s.send(ctx, from, frame{Type: "error", Code: 404, Msg: "no group " + f.Group})
		return
	case !create && !slices.Contains(current, from):
		s.send(ctx, from, frame{Type: "error", Code: 403, Msg: "not a member of " + f.Group})
		return
	}

	asked := f.Members
	if create && !slices.Contains(asked, from) {
		asked = append([]string{from}, asked...)
	}
	before, after := kindMemberAddBefore, kindMemberAddAfter
	if create {
		before, after = kindCreateBefore, kindCreateAfter
	}
	w := s.dialect(ctx)
	id := s.nextID("op")
	r := s.d.Before(callback.WithEventID(ctx, id+"/before"), s.appID, w.command(before, true), w.membersBody(before, members{Group: f.Group, Operator: from, Members: asked}))
	if !r.OK() {
		s.note(id, r, "refused", "the group is unchanged")
		msg := r.Msg
		if r.Err != nil {
			msg = "the App backend could not be asked, and group creation fails closed: try again when it is back"
		}
		s.send(ctx, from, frame{Type: "error", ID: id, Code: r.Code, Msg: msg})
		return
	}
	accepted := w.accepted(asked, r.Data) // the App may only remove members
	var refused []string
	for _, m := range asked {
		if !slices.Contains(accepted, m) {
			refused = append(refused, m)
		}
	}

	s.mu.Lock()
	group := s.groups[f.Group]
	for _, m := range accepted {
		if !slices.Contains(group, m) {
			group = append(group, m)
		}
	}
	s.groups[f.Group] = group
	all := slices.Clone(group)
	s.mu.Unlock()

	if len(refused) > 0 {
		s.note(id, r, "refused", "left out "+strings.Join(refused, ", "))
	} else {
		s.note(id, r, "accepted", "every member accepted")
	}
	// Queued before the members hear of it, as a message's (sendMessage).
	s.after(ctx, id, conversation(message{Group: f.Group}), w.command(after, true), w.membersBody(after, members{Group: f.Group, Operator: from, Members: accepted}))
	note := frame{Type: "group", ID: id, Group: f.Group, Members: all, Refused: refused}
	for _, m := range all {
		s.send(ctx, m, note)
	}
	if !slices.Contains(all, from) {
		s.send(ctx, from, note)
	}
}

// conversation is the order key of m's conversation: its group, or the
// pair of users of a direct message (the same both ways). Its after-callbacks
// reach the App in the order the chat server sent them: a group's create
// before its first message, a message before the next one.
func conversation(m message) string {
	if m.Group != "" {
		return "group:" + m.Group
	}
	a, b := min(m.From, m.To), max(m.From, m.To)
	return "dm:" + a + "|" + b
}

// after queues the after-callback of the message or operation id under
// the order key of its conversation.
func (s *server) after(ctx context.Context, id, key, command string, body []byte) {
	ctx = callback.WithEventID(ctx, id+"/after")
	err := s.d.After(callback.WithOrderKey(ctx, key), s.appID, command, body)
	if errors.Is(err, callback.ErrInvalidOrderKey) {
		// A name with control characters, or a group's too long for a
		// key: the event goes without an order rather than not at all.
		s.log.Warn("after-callback sent without an order key", "command", command, "id", id, "error", err)
		err = s.d.After(ctx, s.appID, command, body)
	}
	if err != nil {
		s.log.Warn("after-callback not queued", "command", command, "id", id, "error", err)
	}
}

// isUser reports whether name has ever logged in.
func (s *server) isUser(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.known[name]
}

func (s *server) isMember(group, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.groups[group], name)
}

func (s *server) members(group string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.groups[group])
}

// send writes f to the user's websocket if the user is online.
func (s *server) send(ctx context.Context, to string, f frame) {
	s.mu.Lock()
	c := s.users[to]
	s.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := wsjson.Write(ctx, c, f); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug("websocket write failed", "to", to, "error", err)
	}
}

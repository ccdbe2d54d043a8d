package main

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/tencent"
)

// dialect is how the chat server names its callbacks and shapes their
// bodies on one protocol, and how the demo App reads them: the seed
// design's names and small bodies, or Tencent Cloud IM's commands with
// its documented fields (From_Account, To_Account, MsgBody of
// TIMTextElem elements, MemberList, ...).
type dialect struct {
	proto callback.Protocol
}

// AppCommand command names. The message and member-add ones are the seed
// design's; group creation has none there, so it uses the same naming.
const (
	cmdSendBefore      = command.MessageSendBefore
	cmdSendAfter       = command.MessageSendAfter
	cmdCreateBefore    = "group.create.before"
	cmdCreateAfter     = command.GroupCreateAfter
	cmdMemberAddBefore = command.GroupMemberAddBefore
	cmdMemberAddAfter  = command.GroupMemberAddAfter
)

// Callback kinds the chat server sends.
const (
	kindSendBefore = iota
	kindSendAfter
	kindCreateBefore
	kindCreateAfter
	kindMemberAddBefore
	kindMemberAddAfter
)

// command returns the command of a callback kind; group tells a group
// message from a one-to-one one (Tencent names them apart).
func (w dialect) command(kind int, group bool) string {
	if w.proto != callback.Tencent {
		return [...]string{cmdSendBefore, cmdSendAfter, cmdCreateBefore, cmdCreateAfter, cmdMemberAddBefore, cmdMemberAddAfter}[kind]
	}
	switch {
	case kind == kindSendBefore && group:
		return tencent.GroupBeforeSendMsg
	case kind == kindSendAfter && group:
		return tencent.GroupAfterSendMsg
	}
	return [...]string{tencent.C2CBeforeSendMsg, tencent.C2CAfterSendMsg,
		tencent.GroupBeforeCreateGroup, tencent.GroupAfterCreateGroup,
		tencent.GroupBeforeInviteJoinGroup, tencent.GroupAfterNewMemberJoin}[kind]
}

// commands lists every command of the dialect, before ones first.
func (w dialect) commands() (before, after []string) {
	for _, group := range []bool{false, true} {
		for kind := range kindMemberAddAfter + 1 {
			cmd := w.command(kind, group)
			list := &after
			if kind%2 == 0 {
				list = &before
			}
			if !slices.Contains(*list, cmd) {
				*list = append(*list, cmd)
			}
		}
	}
	return before, after
}

// message is the seed body of the message callbacks.
type message struct {
	From  string `json:"fromId"`
	To    string `json:"toId,omitempty"`
	Group string `json:"groupId,omitempty"`
	Text  string `json:"text"`
}

// members is the seed body of the group callbacks.
type members struct {
	Group    string   `json:"groupId"`
	Operator string   `json:"operator"`
	Members  []string `json:"members"`
}

// Tencent's body fields.
type (
	msgElement struct {
		MsgType    string          `json:"MsgType"`
		MsgContent json.RawMessage `json:"MsgContent"`
	}
	textContent struct {
		Text string `json:"Text"`
	}
	memberAccount struct {
		Account string `json:"Member_Account"`
	}
	// tencentEvent has the fields of every Tencent callback the chat
	// server sends; each command's body uses its own.
	tencentEvent struct {
		CallbackCommand    string          `json:"CallbackCommand"`
		From               string          `json:"From_Account,omitempty"`
		To                 string          `json:"To_Account,omitempty"`
		GroupID            string          `json:"GroupId,omitempty"`
		Type               string          `json:"Type,omitempty"`
		Name               string          `json:"Name,omitempty"`
		Operator           string          `json:"Operator_Account,omitempty"`
		Owner              string          `json:"Owner_Account,omitempty"`
		JoinType           string          `json:"JoinType,omitempty"`
		MsgBody            []msgElement    `json:"MsgBody,omitempty"`
		MemberList         []memberAccount `json:"MemberList,omitempty"`
		DestinationMembers []memberAccount `json:"DestinationMembers,omitempty"`
		NewMemberList      []memberAccount `json:"NewMemberList,omitempty"`
		EventTime          int64           `json:"EventTime"`
	}
)

// groupType is the Tencent group type of the chat's groups.
const groupType = "Public"

// textBody returns a one-element MsgBody carrying text.
func textBody(text string) []msgElement {
	c, _ := json.Marshal(textContent{Text: text})
	return []msgElement{{MsgType: "TIMTextElem", MsgContent: c}}
}

// bodyText returns the text of a MsgBody's TIMTextElem elements.
func bodyText(body []msgElement) string {
	var text string
	for _, el := range body {
		var c textContent
		if el.MsgType == "TIMTextElem" && json.Unmarshal(el.MsgContent, &c) == nil {
			text += c.Text
		}
	}
	return text
}

func accounts(names []string) []memberAccount {
	out := make([]memberAccount, len(names))
	for i, n := range names {
		out[i] = memberAccount{n}
	}
	return out
}

func names(list []memberAccount) []string {
	out := make([]string, len(list))
	for i, m := range list {
		out[i] = m.Account
	}
	return out
}

// messageBody returns the body of a message callback of kind.
func (w dialect) messageBody(kind int, m message) []byte {
	if w.proto != callback.Tencent {
		b, _ := json.Marshal(m)
		return b
	}
	ev := tencentEvent{CallbackCommand: w.command(kind, m.Group != ""), From: m.From, MsgBody: textBody(m.Text), EventTime: time.Now().UnixMilli()}
	if m.Group != "" {
		ev.GroupID, ev.Type, ev.Operator = m.Group, groupType, m.From
	} else {
		ev.To = m.To
	}
	b, _ := json.Marshal(ev)
	return b
}

// membersBody returns the body of a group callback of kind.
func (w dialect) membersBody(kind int, g members) []byte {
	if w.proto != callback.Tencent {
		b, _ := json.Marshal(g)
		return b
	}
	ev := tencentEvent{CallbackCommand: w.command(kind, true), Type: groupType, Operator: g.Operator, EventTime: time.Now().UnixMilli()}
	switch kind {
	case kindCreateBefore, kindCreateAfter:
		ev.Name, ev.Owner, ev.MemberList = g.Group, g.Operator, accounts(g.Members)
		if kind == kindCreateAfter {
			ev.GroupID = g.Group
		}
	case kindMemberAddBefore:
		ev.GroupID, ev.DestinationMembers = g.Group, accounts(g.Members)
	case kindMemberAddAfter:
		ev.GroupID, ev.JoinType, ev.NewMemberList = g.Group, "Invited", accounts(g.Members)
	}
	b, _ := json.Marshal(ev)
	return b
}

// readMessage reads a message callback's body, as the App does.
func (w dialect) readMessage(body []byte) (message, bool) {
	if w.proto != callback.Tencent {
		var m message
		return m, json.Unmarshal(body, &m) == nil
	}
	var ev tencentEvent
	if json.Unmarshal(body, &ev) != nil {
		return message{}, false
	}
	return message{From: ev.From, To: ev.To, Group: ev.GroupID, Text: bodyText(ev.MsgBody)}, true
}

// readMembers reads a group callback's body, as the App does: the members
// to be added.
func (w dialect) readMembers(body []byte) ([]string, bool) {
	if w.proto != callback.Tencent {
		var g members
		return g.Members, json.Unmarshal(body, &g) == nil
	}
	var ev tencentEvent
	if json.Unmarshal(body, &ev) != nil {
		return nil, false
	}
	return append(names(ev.MemberList), names(ev.DestinationMembers)...), true
}

// rewriteText returns the App's rewrite of a message to text: the seed
// body with the new text, or Tencent's MsgBody in the answer.
func (w dialect) rewriteText(m message, text string) []byte {
	if w.proto == callback.Tencent {
		b, _ := json.Marshal(struct {
			MsgBody []msgElement `json:"MsgBody"`
		}{textBody(text)})
		return b
	}
	m.Text = text
	b, _ := json.Marshal(m)
	return b
}

// refuseMembers returns the App's answer that refuses some members: the
// seed body with only the others, or Tencent's RefusedMembers_Account
// (which Tencent documents for invitations; the demo answers group
// creation the same way).
func (w dialect) refuseMembers(body []byte, kept, refused []string) []byte {
	if w.proto == callback.Tencent {
		b, _ := json.Marshal(struct {
			Refused []string `json:"RefusedMembers_Account"`
		}{refused})
		return b
	}
	var g members
	_ = json.Unmarshal(body, &g)
	g.Members = kept
	b, _ := json.Marshal(g)
	return b
}

// rewrittenText reads the text of the App's rewrite of a message from
// Response.Data; it reports false when there is none.
func (w dialect) rewrittenText(data json.RawMessage) (string, bool) {
	if data == nil {
		return "", false
	}
	if w.proto == callback.Tencent {
		var a struct{ MsgBody []msgElement }
		if json.Unmarshal(data, &a) != nil || a.MsgBody == nil {
			return "", false
		}
		return bodyText(a.MsgBody), true
	}
	var m message
	if json.Unmarshal(data, &m) != nil || m.Text == "" {
		return "", false
	}
	return m.Text, true
}

// accepted returns the members of asked the App accepted, given its
// Response.Data: asked without RefusedMembers_Account on Tencent; on AppCommand
// the body's member list, or a bare list as the seed design's App answers
// for member add, intersected with asked (the App may only remove). On
// AppCommand a "members" that is null or empty accepts nobody: only data
// without a "members" field leaves the list unchanged.
func (w dialect) accepted(asked []string, data json.RawMessage) []string {
	if data == nil {
		return asked
	}
	if w.proto == callback.Tencent {
		var a struct {
			Refused []string `json:"RefusedMembers_Account"`
		}
		if json.Unmarshal(data, &a) != nil {
			return asked
		}
		return slices.DeleteFunc(slices.Clone(asked), func(m string) bool { return slices.Contains(a.Refused, m) })
	}
	var list []string
	if err := json.Unmarshal(data, &list); err == nil {
		return intersect(asked, list)
	}
	var g map[string]json.RawMessage
	if err := json.Unmarshal(data, &g); err != nil {
		return asked
	}
	raw, ok := g["members"]
	if !ok {
		return asked // the App did not touch the member list
	}
	list = nil // null: the App left every member out
	if err := json.Unmarshal(raw, &list); err != nil {
		return []string{} // not a list: accept nobody rather than everybody
	}
	return intersect(asked, list)
}

// intersect returns the members of asked that are in allowed, in asked's order.
func intersect(asked, allowed []string) []string {
	out := []string{}
	for _, m := range asked {
		if slices.Contains(allowed, m) {
			out = append(out, m)
		}
	}
	return out
}

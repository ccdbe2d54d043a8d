package main

import (
	"encoding/json"
	"strings"

	"github.com/imcallback/callback/receiver"
)

// The demo App's rules.
var (
	bannedWords = []string{"spam", "scam"} // a message with one is denied
	rudeWords   = []string{"darn", "heck"} // masked: the message is rewritten
	silentWords = []string{"psst"}         // the message is dropped silently
)

const (
	codeBanned = 40001 // the App's code for a message with a banned word
	botPrefix  = "bot" // members whose name starts with it are refused
)

// decideMessage denies banned words, drops silent ones and masks rude ones.
// A rewrite answers the whole message with its text masked: an object,
// which both protocols can carry (Tencent adds its fields to the answer).
func decideMessage(body []byte) receiver.Decision {
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		return receiver.Allow()
	}
	lower := strings.ToLower(m.Text)
	for _, w := range bannedWords {
		if strings.Contains(lower, w) {
			return receiver.Deny(codeBanned, "message contains a banned word: "+w)
		}
	}
	for _, w := range silentWords {
		if strings.Contains(lower, w) {
			return receiver.Drop()
		}
	}
	masked := m.Text
	for _, w := range rudeWords {
		masked = maskWord(masked, w)
	}
	if masked == m.Text {
		return receiver.Allow()
	}
	m.Text = masked
	return rewrite(m)
}

// decideMembers refuses bots: the answer is the group operation with only
// the members the App accepts.
func decideMembers(body []byte) receiver.Decision {
	var g members
	if err := json.Unmarshal(body, &g); err != nil {
		return receiver.Allow()
	}
	kept := []string{}
	for _, m := range g.Members {
		if !strings.HasPrefix(m, botPrefix) {
			kept = append(kept, m)
		}
	}
	if len(kept) == len(g.Members) {
		return receiver.Allow()
	}
	g.Members = kept
	return rewrite(g)
}

// decide routes a before-callback to its rule; other commands are allowed.
func decide(command string, body []byte) receiver.Decision {
	switch command {
	case cmdSendBefore:
		return decideMessage(body)
	case cmdCreateBefore, cmdMemberAddBefore:
		return decideMembers(body)
	}
	return receiver.Allow()
}

// rewrite answers v, a rewritten event body.
func rewrite(v any) receiver.Decision {
	data, _ := json.Marshal(v) // a message or members: cannot fail
	return receiver.Rewrite(data)
}

// maskWord replaces every case-insensitive occurrence of w in s by its first
// letter and asterisks.
func maskWord(s, w string) string {
	lower := strings.ToLower(s)
	var b strings.Builder
	for {
		i := strings.Index(lower, w)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(s[i : i+1])
		b.WriteString(strings.Repeat("*", len(w)-1))
		s, lower = s[i+len(w):], lower[i+len(w):]
	}
}

package main

import (
	"encoding/json"
	"strings"

	"github.com/imcallback/callback"
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

// decision is what the demo App decides for one before-callback.
type decision struct {
	action callback.Action
	code   int    // for Deny
	msg    string // for Deny
	data   any    // for Allow: a rewritten payload, or nil
}

// decideMessage denies banned words, drops silent ones and masks rude ones.
func decideMessage(body []byte) decision {
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		return decision{action: callback.Allow}
	}
	lower := strings.ToLower(m.Text)
	for _, w := range bannedWords {
		if strings.Contains(lower, w) {
			return decision{action: callback.Deny, code: codeBanned, msg: "message contains a banned word: " + w}
		}
	}
	for _, w := range silentWords {
		if strings.Contains(lower, w) {
			return decision{action: callback.Drop}
		}
	}
	masked := m.Text
	for _, w := range rudeWords {
		masked = maskWord(masked, w)
	}
	if masked != m.Text {
		m.Text = masked
		return decision{action: callback.Allow, data: m}
	}
	return decision{action: callback.Allow}
}

// decideMembers refuses bots: the answer's data is the member list to keep.
func decideMembers(body []byte) decision {
	var g members
	if err := json.Unmarshal(body, &g); err != nil {
		return decision{action: callback.Allow}
	}
	kept := []string{}
	for _, m := range g.Members {
		if !strings.HasPrefix(m, botPrefix) {
			kept = append(kept, m)
		}
	}
	if len(kept) == len(g.Members) {
		return decision{action: callback.Allow}
	}
	return decision{action: callback.Allow, data: kept}
}

// decide routes a before-callback to its rule; other commands are allowed.
func decide(command string, body []byte) decision {
	switch command {
	case cmdSendBefore:
		return decideMessage(body)
	case cmdCreateBefore, cmdMemberAddBefore:
		return decideMembers(body)
	}
	return decision{action: callback.Allow}
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

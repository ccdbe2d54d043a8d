package main

import (
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
// A rewrite answers the message with its text masked, in the protocol's
// shape (Tencent: MsgBody in the answer).
func decideMessage(w dialect, body []byte) receiver.Decision {
	m, ok := w.readMessage(body)
	if !ok {
		return receiver.Allow()
	}
	lower := strings.ToLower(m.Text)
	for _, word := range bannedWords {
		if strings.Contains(lower, word) {
			return receiver.Deny(codeBanned, "message contains a banned word: "+word)
		}
	}
	for _, word := range silentWords {
		if strings.Contains(lower, word) {
			return receiver.Drop()
		}
	}
	masked := m.Text
	for _, word := range rudeWords {
		masked = maskWord(masked, word)
	}
	if masked == m.Text {
		return receiver.Allow()
	}
	return receiver.Rewrite(w.rewriteText(m, masked))
}

// decideMembers refuses bots: the answer names the members the App
// refuses (Tencent) or lists the ones it accepts (AppCommand).
func decideMembers(w dialect, body []byte) receiver.Decision {
	asked, ok := w.readMembers(body)
	if !ok {
		return receiver.Allow()
	}
	kept, refused := []string{}, []string(nil) // kept is [] when all are refused, never null
	for _, m := range asked {
		if strings.HasPrefix(m, botPrefix) {
			refused = append(refused, m)
		} else {
			kept = append(kept, m)
		}
	}
	if len(refused) == 0 {
		return receiver.Allow()
	}
	return receiver.Rewrite(w.refuseMembers(body, kept, refused))
}

// decide routes a before-callback to its rule; other commands are allowed.
func decide(w dialect, command string, body []byte) receiver.Decision {
	switch command {
	case w.command(kindSendBefore, false), w.command(kindSendBefore, true):
		return decideMessage(w, body)
	case w.command(kindCreateBefore, true), w.command(kindMemberAddBefore, true):
		return decideMembers(w, body)
	}
	return receiver.Allow()
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

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/wire"
	"github.com/imcallback/callback/receiver"
)

// A rule is one of listen's answers: when a callback's command and body
// match, answer Action. It is read from a rules file, or made from flags.
type rule struct {
	Command string `json:"command"` // the command it applies to; empty: all
	Match   string `json:"match"`   // a regular expression on the raw body; empty: any body
	Action  string `json:"action"`  // allow, deny, drop or rewrite
	Code    int    `json:"code"`    // deny: the App's code; 0: 403 (seed) or 120001 (tencent)
	Msg     string `json:"msg"`     // deny: the App's message
	Replace string `json:"replace"` // rewrite: what replaces each match inside the body's strings ($1 expands)

	name string         // how the rule is shown: "rule 2" or the flag
	re   *regexp.Regexp // Match compiled
}

// rules decide in order; see decide.
type rules []*rule

const rulesHelp = `Rules file (--rules): a JSON array of rules, for example
  [
    {"command": "message.send.before", "match": "(?i)casino", "action": "drop"},
    {"match": "spam", "action": "deny", "code": 40001, "msg": "no spam"},
    {"match": "(?i)darn", "action": "rewrite", "replace": "****"},
    {"command": "group.member.add.before", "match": "bot-", "action": "deny", "msg": "no bots"}
  ]
"command" (empty: every command) and "match" (a Go regular expression on the
raw body; empty: any body) select a callback. The first allow, deny or drop
rule that matches decides. If none does, every matching rewrite rule
replaces what it matches inside the body's JSON strings (keys are kept), and
the answer is the rewritten body (tencent: its fields are added to the
answer, so rewrite a MsgBody to change a message); with no change, allow.
Rules from the file come before those from flags.
`

// loadRules reads a rules file.
func loadRules(path string) (rules, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rs rules
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rs); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	for i, r := range rs {
		if r == nil {
			return nil, fmt.Errorf("%s: rule %d is null", path, i+1)
		}
		r.name = fmt.Sprintf("rule %d", i+1)
	}
	return rs, nil
}

// compile checks each rule for protocol p and compiles its pattern.
func (rs rules) compile(p callback.Protocol) error {
	for _, r := range rs {
		re, err := regexp.Compile(r.Match)
		if err != nil {
			return fmt.Errorf("%s: match: %v", r.name, err)
		}
		r.re = re
		switch r.Action {
		case "allow", "drop", "rewrite":
		case "deny":
			if r.Code == 0 {
				r.Code = defaultDenyCode(p)
			}
			if p == callback.AppCommand && r.Code == wire.SeedOK {
				return fmt.Errorf("%s: deny code %d means allow in the AppCommand protocol", r.name, r.Code)
			}
			if p == callback.Tencent && r.Code == wire.TencentDrop {
				return fmt.Errorf("%s: deny code 2 means drop in the tencent protocol", r.name)
			}
		default:
			return fmt.Errorf("%s: action %q is not allow, deny, drop or rewrite", r.name, r.Action)
		}
	}
	return nil
}

// defaultDenyCode is a deny code that passes its message to the client.
func defaultDenyCode(p callback.Protocol) int {
	if p == callback.Tencent {
		return 120001
	}
	return 403
}

func (r *rule) applies(command string, body []byte) bool {
	return (r.Command == "" || r.Command == command) && r.re.Match(body)
}

// decide returns the answer to a callback and which rule chose it ("" for
// the default allow).
func (rs rules) decide(p callback.Protocol, command string, body []byte) (receiver.Decision, string) {
	for _, r := range rs {
		if r.Action == "rewrite" || !r.applies(command, body) {
			continue
		}
		switch r.Action {
		case "deny":
			return receiver.Deny(r.Code, r.Msg), r.name
		case "drop":
			return receiver.Drop(), r.name
		}
		return receiver.Allow(), r.name
	}

	var doc any
	var used []string
	for _, r := range rs {
		if r.Action != "rewrite" || !r.applies(command, body) {
			continue
		}
		if doc == nil {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				return receiver.Allow(), ""
			}
		}
		var changed bool
		doc, changed = replaceStrings(doc, r.re, r.Replace)
		if changed {
			used = append(used, r.name)
		}
	}
	if len(used) == 0 {
		return receiver.Allow(), ""
	}
	if _, ok := doc.(map[string]any); p != callback.AppCommand && !ok {
		return receiver.Allow(), "rewrite skipped: " + p.String() + " needs a JSON object body"
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return receiver.Allow(), ""
	}
	return receiver.Rewrite(data), strings.Join(used, ", ")
}

// replaceStrings replaces re's matches in every string value of v (not in
// object keys) and reports whether anything changed.
func replaceStrings(v any, re *regexp.Regexp, repl string) (any, bool) {
	switch x := v.(type) {
	case string:
		s := re.ReplaceAllString(x, repl)
		return s, s != x
	case []any:
		var changed bool
		for i := range x {
			var c bool
			x[i], c = replaceStrings(x[i], re, repl)
			changed = changed || c
		}
		return x, changed
	case map[string]any:
		var changed bool
		for k := range x {
			var c bool
			x[k], c = replaceStrings(x[k], re, repl)
			changed = changed || c
		}
		return x, changed
	}
	return v, false
}

// flagRules are the rules given by listen's flags.
type flagRules struct {
	deny, drop, rewrite []string
	denyCode            int
	denyMsg             string
}

// rules turns the flags into rules, after those of the file: denies, drops,
// then rewrites.
func (f *flagRules) rules() (rules, error) {
	var rs rules
	for _, p := range f.deny {
		rs = append(rs, &rule{Match: p, Action: "deny", Code: f.denyCode, Msg: f.denyMsg, name: fmt.Sprintf("--deny-pattern %q", p)})
	}
	for _, p := range f.drop {
		rs = append(rs, &rule{Match: p, Action: "drop", name: fmt.Sprintf("--drop-pattern %q", p)})
	}
	for _, rw := range f.rewrite {
		pattern, repl, ok := bytes.Cut([]byte(rw), []byte("="))
		if !ok || len(pattern) == 0 {
			return nil, errors.New("--rewrite wants PATTERN=REPLACEMENT, for example --rewrite '(?i)darn=****'")
		}
		rs = append(rs, &rule{Match: string(pattern), Action: "rewrite", Replace: string(repl), name: fmt.Sprintf("--rewrite %q", rw)})
	}
	return rs, nil
}

package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
)

func testRules(t testing.TB, p callback.Protocol) rules {
	f := flagRules{
		deny:    []string{"(?i)spam"},
		drop:    []string{"psst"},
		rewrite: []string{"(?i)darn=d***", `(\w+)@example\.com=$1@…`},
	}
	rs, err := f.rules()
	require.NoError(t, err)
	require.NoError(t, rs.compile(p))
	return rs
}

func TestRulesDecide(t *testing.T) {
	tests := []struct {
		name, body string
		proto      callback.Protocol
		want       receiver.Decision
		why        string
	}{
		{"no rule", `{"text":"hello"}`, callback.AppCommand, receiver.Allow(), ""},
		{"deny, seed's default code", `{"text":"SPAM"}`, callback.AppCommand, receiver.Deny(403, ""), `--deny-pattern "(?i)spam"`},
		{"deny, tencent's default code", `{"text":"spam"}`, callback.Tencent, receiver.Deny(120001, ""), `--deny-pattern "(?i)spam"`},
		{"deny before drop", `{"text":"spam psst"}`, callback.AppCommand, receiver.Deny(403, ""), `--deny-pattern "(?i)spam"`},
		{"drop", `{"text":"psst"}`, callback.Tencent, receiver.Drop(), `--drop-pattern "psst"`},
		{"rewrites in strings, not keys", `{"darn":"Darn, write to bob@example.com","n":12345678901234567890}`, callback.AppCommand,
			receiver.Rewrite(json.RawMessage(`{"darn":"d***, write to bob@…","n":12345678901234567890}`)),
			`--rewrite "(?i)darn=d***", --rewrite "(\\w+)@example\\.com=$1@…"`},
		{"rewrite of an array, seed", `["darn"]`, callback.AppCommand, receiver.Rewrite(json.RawMessage(`["d***"]`)), `--rewrite "(?i)darn=d***"`},
		{"rewrite of an array, tencent cannot", `["darn"]`, callback.Tencent, receiver.Allow(), "rewrite skipped: tencent needs a JSON object body"},
		{"a match only in a key", `{"darn":1}`, callback.AppCommand, receiver.Allow(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := testRules(t, tt.proto)
			got, why := rs.decide(tt.proto, "message.send.before", []byte(tt.body))
			assert.Equal(t, tt.want.Action, got.Action)
			assert.Equal(t, tt.want.Code, got.Code)
			if tt.want.Data != nil {
				assert.JSONEq(t, string(tt.want.Data), string(got.Data))
			} else {
				assert.Nil(t, got.Data)
			}
			assert.Equal(t, tt.why, why)
		})
	}
}

func TestRulesCompileRejects(t *testing.T) {
	for _, tt := range []struct {
		rule  rule
		proto callback.Protocol
		want  string
	}{
		{rule{Action: "deny", Code: 200}, callback.AppCommand, "means allow"},
		{rule{Action: "deny", Code: 2}, callback.Tencent, "means drop"},
		{rule{Action: "bless"}, callback.AppCommand, `action "bless"`},
		{rule{Action: "deny", Match: "(["}, callback.AppCommand, "match:"},
	} {
		tt.rule.name = "rule 1"
		err := rules{&tt.rule}.compile(tt.proto)
		require.Error(t, err, "%+v", tt.rule)
		assert.Contains(t, err.Error(), tt.want)
	}
}

// FuzzRulesDecide: any body gets a decision that the receiver can answer in
// either protocol, and never a panic.
func FuzzRulesDecide(f *testing.F) {
	for _, b := range []string{`{"text":"darn spam"}`, `["darn",{"a":"darn"}]`, `"darn"`, `{"n":1e400}`, `not json darn`, ``} {
		f.Add([]byte(b))
	}
	seed, tencent := testRules(f, callback.AppCommand), testRules(f, callback.Tencent)
	f.Fuzz(func(t *testing.T, body []byte) {
		for p, rs := range map[callback.Protocol]rules{callback.AppCommand: seed, callback.Tencent: tencent} {
			d, _ := rs.decide(p, "message.send.before", body)
			if d.Data == nil {
				continue
			}
			if !json.Valid(d.Data) {
				t.Fatalf("%v: rewrite of %q is not JSON: %q", p, body, d.Data)
			}
			var obj map[string]json.RawMessage
			if p == callback.Tencent && json.Unmarshal(d.Data, &obj) != nil {
				t.Fatalf("tencent: rewrite of %q is not an object: %q", body, d.Data)
			}
		}
	})
}

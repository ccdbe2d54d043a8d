package jsonobj_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"

	"github.com/imcallback/callback/internal/jsonobj"
)

func TestCheck(t *testing.T) {
	for _, in := range []string{
		`{}`, ` { } `, `{"code":200, "msg":"ok", "data":{"code":1,"Code":2}}`,
		`{"a":[1,{"a":"}"}],"b":"\"}","c":-1.5e3,"d":true,"e":null,"f":"\\"}`,
		`{"\u00e9":1,"é2":2}`,
	} {
		assert.NoError(t, jsonobj.Check([]byte(in), "code", "msg", "data"), "%s: nested keys are not the top level's business", in)
	}
	var many strings.Builder
	many.WriteString(`{`)
	for i := range 40 {
		fmt.Fprintf(&many, `"k%d":%d,`, i, i)
	}
	assert.NoError(t, jsonobj.Check([]byte(many.String()+`"last":0}`)), "many distinct keys")
	assert.ErrorIs(t, jsonobj.Check([]byte(many.String()+`"K3":0}`)), jsonobj.ErrAmbiguous, "many keys, one repeated in another case")

	for _, tt := range []struct{ name, in string }{
		{"exact duplicate", `{"code":403,"code":200}`},
		{"case variant", `{"code":403,"Code":200}`},
		{"escaped case variant", `{"code":403,"\u0043ode":200}`},
		{"kelvin sign", `{"k":1,"\u212a":2}`},
		{"long s", `{"s":1,"\u017f":2}`},
		{"a name in another case", `{"Code":200}`},
		{"after nested values", `{"a":{"b":[1,2,{"c":"]}"}]},"x":"\"","A":1}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, jsonobj.Check([]byte(tt.in), "code"), jsonobj.ErrAmbiguous)
		})
	}
	for _, in := range []string{``, `[]`, `"x"`, `{"a":1`, `{"a":1}{}`, `{"a":1} x`, "{\"a\":\"\xff\"}", `{"a":}`, `  `} {
		assert.ErrorIs(t, jsonobj.Check([]byte(in)), jsonobj.ErrNotObject, "%q", in)
	}
}

// reference is Check written the slow, obvious way, with encoding/json's
// token decoder: the oracle of FuzzCheck.
func reference(data []byte, names ...string) error {
	if !utf8.Valid(data) || !json.Valid(data) {
		return jsonobj.ErrNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return jsonobj.ErrNotObject
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonobj.ErrNotObject
		}
		key := tok.(string)
		for _, k := range append(keys, names...) {
			if strings.EqualFold(k, key) && (slices.Contains(keys, k) || k != key) {
				return jsonobj.ErrAmbiguous
			}
		}
		keys = append(keys, key)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return jsonobj.ErrNotObject
		}
	}
	return nil
}

func FuzzCheck(f *testing.F) {
	f.Add(`{"code":403,"Code":200}`)
	f.Add(`{"a":[1,{"a":"}"}],"b":"\"}","c":-1e3,"d":null}`)
	f.Add(`{"\u212a":1,"k":2}`)
	f.Add(` {"msg" : "x" , "data":[[]]} `)
	f.Fuzz(func(t *testing.T, in string) {
		got, want := jsonobj.Check([]byte(in), "code"), reference([]byte(in), "code")
		if got != want {
			t.Fatalf("Check(%q) = %v, reference %v", in, got, want)
		}
	})
}

func TestCollides(t *testing.T) {
	assert.True(t, jsonobj.Collides("errorcode", "ActionStatus", "ErrorCode"))
	assert.True(t, jsonobj.Collides("ErrorCode", "ErrorCode"))
	assert.False(t, jsonobj.Collides("MsgBody", "ActionStatus", "ErrorCode"))
}

func TestSet(t *testing.T) {
	for _, tt := range []struct {
		obj  string
		set  []jsonobj.Member
		want string
	}{
		{`{"a":1, "b" : [1, 2],"c":"x"}`, []jsonobj.Member{{Key: "b", Value: []byte(`null`)}, {Key: "d", Value: []byte(`true`)}}, `{"a":1,"b":null,"c":"x","d":true}`},
		{`{}`, []jsonobj.Member{{Key: "k", Value: []byte(`"v"`)}}, `{"k":"v"}`},
		{`{"a":1,"a":2}`, []jsonobj.Member{{Key: "a", Value: []byte(`3`)}}, `{"a":3}`},
		{`{"a":1,"a":2}`, nil, `{"a":1,"a":2}`},
		{`{"x\u0041":{"n":[{}]}}`, []jsonobj.Member{{Key: "xA", Value: []byte(`0`)}}, `{"xA":0}`},
	} {
		got, err := jsonobj.Set([]byte(tt.obj), tt.set)
		if err != nil || string(got) != tt.want {
			t.Errorf("Set(%s): %s, %v; want %s", tt.obj, got, err, tt.want)
		}
	}
	for _, bad := range []string{`[]`, `1`, `{`, "{\"a\":\"\xff\"}"} {
		if _, err := jsonobj.Set([]byte(bad), nil); err == nil {
			t.Errorf("Set(%q): no error", bad)
		}
	}
}

package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	goccy "github.com/goccy/go-json"

	"github.com/imcallback/callback/format"
)

// eventBody returns a message.send-like JSON body of about n bytes.
func eventBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"From_Account":"jared","To_Account":"jonh","MsgBody":[`)
	for i := 0; b.Len() < n-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"MsgType":"TIMTextElem","MsgContent":{"Text":"héllo wörld ` + strconv.Itoa(i) + `"}}`)
	}
	b.WriteString(`],"EventTime":1670574414123}`)
	return []byte(b.String())
}

// FuzzValidBody checks validBody (goccy/go-json's Valid or validObject,
// and utf8.Valid) against encoding/json's Valid and utf8.Valid: they must
// accept and refuse the same bodies. validObject is also checked alone on
// every input that starts as an object, whatever its size, since the
// fuzzer's inputs are mostly shorter than objectCheckMin. The seeds are
// tricky JSON, each also as the value of an object padded past
// objectCheckMin by a long string, long text, and the answers of the
// decode fuzzers' corpus.
func FuzzValidBody(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `[1,2,"x"]`, `"\ud800"`, "\"\xff\"", `{"a":1,"a":2}`, `1e400`, `-0`,
		`01`, ` {} `, `{"a":}`, `[1,]`, "\"\t\"", `"\u00zz"`, `nul`, `true `, "1\x00",
		`{"a" : [ ] }`, "", " ", `"\/"`, `1.`, `.1`, `1e`, `-`, `[[[[]]]]`, "{\"\x00\":1}",
		"{\"a\":\"\xed\xa0\x80\"}", `{"a":"héllo ✓"}`, "\xef\xbb\xbf{}", `{"a":1}}`, `{} {}`,
		"\"\x7f\"", "\"\xef\xbf\xbd\"", "\"\xf4\x90\x80\x80\"", "\"\xc0\xaf\"", `"\u12"`, `"\uD83D\uDE00"`, `"\x"`,
		`[1e+5,-1.5E-3,0.0,-0,1E9]`, `[-]`, `[1e]`, `[1.e3]`, `[--1]`, `[+1]`, `{"a":tru}`, `nulll`, `[,1]`,
		`{"a" 1}`, `{1:2}`, `{"a":1,}`, `[1 2]`, "\"ab\\\"cdefghijklmnop\"", `"abcdefgh\`, `"abcdefghijklmno`,
		`{"text":"` + strings.Repeat("hello, how are you today? ", 40) + `"}`,
		`{"text":"` + strings.Repeat("héllo wörld ✓ ", 40) + `"}`,
	} {
		f.Add([]byte(s))
	}
	pad := strings.Repeat("abcdefgh", objectCheckMin/8)
	for _, s := range []string{
		`1`, `01`, `[1,]`, `{"a":}`, "\"\t\"", `"\u00zz"`, `"\x"`, `"\ud800"`, `tru`, `[1e]`, `{"a" 1}`,
		"\"" + pad + "\x01" + pad + "\"", "\"" + pad + "\\q" + pad + "\"", "\"" + pad + "\\u12" + pad + "\"",
		"\"" + pad + "\\\"" + pad + "\"", "\"" + pad + "\xff\"", "\"" + pad, "\"" + pad + "\\",
	} {
		f.Add([]byte(`{"pad":"` + pad + `","v":` + s + `}`))
		f.Add([]byte(`{"v":` + s + `,"pad":"` + pad + `"}`))
	}
	f.Add([]byte(`{"pad":"` + pad + `"} {}`))
	f.Add([]byte(`{"pad":"` + pad + `"}}`))
	f.Add([]byte(`{"pad":"` + pad + `"}` + "\x00"))
	f.Add([]byte(" \n{\"pad\":\"" + pad + "\"} \t"))
	f.Add([]byte("{\"" + pad + "\x01\":1}"))
	f.Add([]byte("{\"" + pad + "\\q\":1}"))
	f.Add(eventBody(300))
	for _, dir := range []string{"FuzzSeedDecode", "FuzzTencentDecode"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			_, lit, ok := bytes.Cut(b, []byte("\n[]byte("))
			if !ok {
				continue
			}
			s, err := strconv.Unquote(string(bytes.TrimSuffix(bytes.TrimSpace(lit), []byte(")"))))
			if err != nil {
				f.Fatalf("%s: %v", name, err)
			}
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want := utf8.Valid(body) && json.Valid(body)
		if got := validBody(body); got != want {
			t.Fatalf("validBody(%q) = %v, encoding/json says %v", body, got, want)
		}
		if firstByte(body) == '{' {
			if got, want := validObject(body), json.Valid(body); got != want {
				t.Fatalf("validObject(%q) = %v, encoding/json's Valid says %v", body, got, want)
			}
		}
	})
}

// TestValidBodyNesting checks validBody at encoding/json's nesting limit,
// which fuzzing does not reach: 10,000 levels are valid, 10,001 are not.
func TestValidBodyNesting(t *testing.T) {
	for _, n := range []int{63, 64, 65, 10000, 10001} {
		for name, body := range map[string]string{
			"arrays":        strings.Repeat("[", n) + strings.Repeat("]", n),
			"objects":       strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n),
			"empty":         strings.Repeat("[", n-1) + "{}" + strings.Repeat("]", n-1),
			"unclosed":      strings.Repeat("[", n) + strings.Repeat("]", n-1),
			"mixed, spaced": strings.Repeat(`[ {"a" : `, n/2) + "[ ]" + strings.Repeat("} ]", n/2),
			// an object's value, checked by validObject
			"in an object":   `{"pad":"` + strings.Repeat("x", objectCheckMin) + `","a":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `}`,
			"in an object 2": `{"a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`,
		} {
			want := json.Valid([]byte(body))
			if got := validBody([]byte(body)); got != want {
				t.Errorf("%s, %d levels: validBody = %v, encoding/json says %v", name, n, got, want)
			}
		}
	}
}

// BenchmarkValidBody measures the body check of Before and After
// (validBody: utf8.Valid, then validObject for an object of
// objectCheckMin bytes or more, else goccy/go-json's Valid) against
// encoding/json's Valid, which goccy's replaced, goccy's Valid alone,
// which validObject replaced for large objects, and utf8.Valid alone, at
// three sizes, on two bodies: many short strings with accents (event),
// and one long ASCII text, as the bench program's events (text).
func BenchmarkValidBody(b *testing.B) {
	for _, size := range []int{100, 4 << 10, 64 << 10} {
		benchmarkValidBody(b, "event/"+strconv.Itoa(size)+"B", eventBody(size))
		benchmarkValidBody(b, "text/"+strconv.Itoa(size)+"B", textBody(size))
	}
}

// textBody returns a message event of about n bytes whose text is one
// long ASCII string.
func textBody(n int) []byte {
	head := `{"fromId":"alice","toId":"bob","msgId":"m-000001","text":"`
	tail := `","ts":1700000000000}`
	text := strings.Repeat("hello, how are you today? ", n/26+1)[:max(0, n-len(head)-len(tail))]
	return []byte(head + text + tail)
}

func benchmarkValidBody(b *testing.B, name string, body []byte) {
	if !validBody(body) {
		b.Fatal("the benchmark body is not valid")
	}
	for _, check := range []struct {
		name  string
		valid func([]byte) bool
	}{
		{"encoding-json", func(body []byte) bool { return utf8.Valid(body) && json.Valid(body) }},
		{"utf8.Valid", utf8.Valid},
		{"goccy.Valid", func(body []byte) bool { return utf8.Valid(body) && goccy.Valid(body) }},
		{"validBody", validBody},
	} {
		b.Run(check.name+"/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if !check.valid(body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// BenchmarkDecodeAnswer measures reading a Seed answer strictly (every
// top-level key once, in one case) against a plain json.Unmarshal into a
// struct, which matched keys in any case and let the last win.
func BenchmarkDecodeAnswer(b *testing.B) {
	answer := []byte(`{"code":200,"msg":"success","data":{"text":"h*llo","to":["u1","u2"]}}`)
	b.Run("json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var a struct {
				Code *int            `json:"code"`
				Msg  string          `json:"msg"`
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(answer, &a); err != nil || a.Code == nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppCommand.Decode", func(b *testing.B) {
		w := mustSender(b, AppCommand, "")
		for b.Loop() {
			if _, err := w.Decode(answer); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// urlOf returns the request URL of call c to u in format w as a
// string, built without target: u without its fragment, with its own query
// (less what the protocol sets) and then the call's parameters.
func urlOf(u *url.URL, w format.Sender, c format.Call) string {
	ref := *u
	own := ref.Query()
	for _, k := range w.Reserved() {
		own.Del(k)
	}
	ref.RawQuery, ref.ForceQuery, ref.Fragment, ref.RawFragment = "", false, "", ""
	q := strings.TrimPrefix(string(w.AppendQuery([]byte(own.Encode()), c)), "&")
	return ref.String() + "?" + q
}

// newRequest builds, from the URL New parsed, the request URL and Host that
// http.NewRequest would from the whole URL as a string.
func TestTargetNewRequest(t *testing.T) {
	calls := []format.Call{
		{AppID: 10000, Command: "message.send.before"},
		{AppID: -1, Command: "a b&c=d/é", ClientIP: "10.0.0.1", Platform: "iOS"},
	}
	for _, raw := range []string{
		"http://127.0.0.1:8989/callback",
		"https://app.example/cb?token=x&appId=7&command=no",
		"http://user:p%40ss@app.example:80/a%2Fb/c?x=1",
		"http://[::1]:/cb?",
		"http://app.example",
		"https://app.example/path with space?SdkAppid=1&k=v",
	} {
		u, err := parseURL(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		for _, w := range []format.Sender{mustSender(t, AppCommand, ""), mustSender(t, Tencent, "")} {
			tg := newTarget(u, w.Reserved()...)
			for _, c := range calls {
				want, err := http.NewRequest(http.MethodPost, urlOf(u, w, c), nil)
				if err != nil {
					t.Fatalf("%s: %v", raw, err)
				}
				got, err := tg.newRequest(context.Background(), w, c, []byte(`{}`))
				if err != nil {
					t.Fatalf("%s: %v", raw, err)
				}
				if got.URL.String() != want.URL.String() || got.Host != want.Host || got.URL.User.String() != want.URL.User.String() {
					t.Errorf("%s: got URL %q host %q, want %q host %q", raw, got.URL, got.Host, want.URL, want.Host)
				}
				if *got.URL != *want.URL && got.URL.User.String() == want.URL.User.String() {
					uw, ug := *want.URL, *got.URL
					uw.User, ug.User = nil, nil
					if uw != ug {
						t.Errorf("%s: got URL %#v, want %#v", raw, ug, uw)
					}
				}
				if got.ContentLength != 2 || got.GetBody == nil {
					t.Errorf("%s: got ContentLength %d, want 2 and a GetBody", raw, got.ContentLength)
				}
			}
		}
	}
}

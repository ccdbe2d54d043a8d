package callback

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
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

// BenchmarkValidBody measures the body check of Before and After against
// json.Valid alone (the check before UTF-8 was required), at three sizes.
func BenchmarkValidBody(b *testing.B) {
	for _, size := range []int{100, 4 << 10, 64 << 10} {
		body := eventBody(size)
		if !validBody(body) {
			b.Fatal("the benchmark body is not valid")
		}
		name := strconv.Itoa(size) + "B"
		b.Run("json.Valid/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if !json.Valid(body) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run("utf8.Valid/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if !utf8.Valid(body) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run("validBody/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if !validBody(body) {
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
	b.Run("seedWire.decode", func(b *testing.B) {
		var w seedWire
		for b.Loop() {
			if _, err := w.decode(answer); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package callback

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/imcallback/callback/format"
	"github.com/imcallback/callback/internal/wire"
)

// mustSender returns p's Sender keyed with secret.
func mustSender(t testing.TB, p Protocol, secret string) format.Sender {
	t.Helper()
	s, err := newSender(p, secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkDecoded holds for every answer a wire decodes: an error wraps
// ErrBadAnswer and comes with the zero Response; a Response has a valid
// Action and, if any, Data that is valid JSON.
func checkDecoded(t *testing.T, r format.Decision, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrBadAnswer) {
			t.Fatalf("got error %v, want one wrapping ErrBadAnswer", err)
		}
		if r.Code != 0 || r.Msg != "" || r.Data != nil || r.Action != Allow {
			t.Fatalf("got %+v with an error, want the zero Decision", r)
		}
		return
	}
	if r.Action != Allow && r.Action != Deny && r.Action != Drop {
		t.Fatalf("got Action %v", r.Action)
	}
	if r.Data != nil && !json.Valid(r.Data) {
		t.Fatalf("Data %q is not valid JSON", r.Data)
	}
}

func FuzzSeedDecode(f *testing.F) {
	for _, s := range []string{
		`{"code":200,"msg":"success"}`,
		`{"code":403,"msg":"no","data":null}`,
		`{"code":200,"data":{"members":["a","b"]}}`,
		`{"msg":"no code"}`,
		`{"code":"200"}`,
		`{"code":1e400}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		r, err := mustSender(t, AppCommand, "").Decode(answer)
		checkDecoded(t, r, err)
		if err == nil && (r.Code == wire.SeedOK) != (r.Action == Allow) {
			t.Fatalf("code %d gave Action %v", r.Code, r.Action)
		}
	})
}

func FuzzTencentDecode(f *testing.F) {
	for _, s := range []string{
		`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`,
		`{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"no"}`,
		`{"ActionStatus":"OK","ErrorCode":2,"ErrorInfo":""}`,
		`{"ActionStatus":"FAIL","ErrorCode":120001,"ErrorInfo":"banned"}`,
		`{"ErrorCode":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}],"CloudCustomData":"x"}`,
		`{"ErrorCode":0,"RefusedMembers_Account":["a"]}`,
		`{"ErrorCode":null}`, `{"ErrorCode":"0"}`, `{"ErrorCode":0,"ErrorCode":1}`,
		`{"ErrorCode":0,"ErrorInfo":7}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		r, err := mustSender(t, Tencent, "").Decode(answer)
		checkDecoded(t, r, err)
		if err != nil {
			return
		}
		switch {
		case r.Code == wire.TencentAllow && r.Action != Allow,
			r.Code == wire.TencentDrop && r.Action != Drop,
			r.Code != wire.TencentAllow && r.Code != wire.TencentDrop && r.Action != Deny:
			t.Fatalf("ErrorCode %d gave Action %v", r.Code, r.Action)
		}
		if len(answer) > 0 && r.Data != nil && &r.Data[0] == &answer[0] {
			t.Fatal("Data aliases the answer buffer")
		}
	})
}

func FuzzOpenIMDecode(f *testing.F) {
	for _, s := range []string{
		`{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}`,
		`{"actionCode":0,"errCode":5001,"errMsg":"blocked","nextCode":1}`,
		`{"actionCode":1,"nextCode":1}`,
		`{"actionCode":0,"nextCode":0,"content":"{\"content\":\"hi\"}","ex":null}`,
		`{"userIDList":["a","b"]}`,
		`{"nextCode":"1"}`, `{"nextCode":1,"NextCode":0}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		r, err := mustSender(t, OpenIM, "").Decode(answer)
		checkDecoded(t, r, err)
		if err != nil {
			return
		}
		if r.Action == Drop {
			t.Fatal("OpenIM cannot drop")
		}
		if len(answer) > 0 && r.Data != nil && &r.Data[0] == &answer[0] {
			t.Fatal("Data aliases the answer buffer")
		}
	})
}

func BenchmarkSign(b *testing.B) {
	body := []byte(`{"From_Account":"alice","To_Account":"bob","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello there"}}]}`)
	seed1 := mustSender(b, AppCommand, "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	seed2 := mustSender(b, AppCommand, "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= whsec_ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=")
	for _, bc := range []struct {
		name string
		w    format.Sender
	}{
		{"seed/one-key", seed1},
		{"seed/two-keys", seed2},
		{"tencent", mustSender(b, Tencent, "xxxxyyyy")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/cb?SdkAppid=1", nil)
			raw := req.URL.RawQuery
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				req.URL.RawQuery = raw
				bc.w.Sign(req, format.Call{EventID: "msg_ABCDEFGHIJKLMNOP_1"}, body, now)
			}
		})
	}
}

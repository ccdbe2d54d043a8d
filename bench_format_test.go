package callback_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/imcallback/callback"
)

// BenchmarkBeforeTencent is BenchmarkBefore on Tencent's format, signed
// with a token, against a loopback backend that allows.
func BenchmarkBeforeTencent(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)
	}))
	b.Cleanup(srv.Close)
	d := newBenchDispatcher(b, callback.Config{URL: srv.URL + "/callback", Protocol: callback.Tencent, Secret: "xxxxyyyy"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := d.Before(ctx, 10000, "C2C.CallbackBeforeSendMsg", benchBody); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkBeforeSigned is BenchmarkBefore with a Standard Webhooks
// secret.
func BenchmarkBeforeSigned(b *testing.B) {
	d := newBenchDispatcher(b, callback.Config{URL: newBenchBackend(b).URL + "/callback",
		Secret: "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := d.Before(ctx, 10000, "message.send.before", benchBody); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

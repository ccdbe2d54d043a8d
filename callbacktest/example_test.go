package callbacktest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/command"
)

// An IM server's test scripts the App backend's answers, drives the code
// that calls Before and After, and checks what the App backend received.
func Example() {
	t := &testing.T{} // in a real test, the test's own t
	secret := callbacktest.NewSecret()
	app := callbacktest.NewServer(t, callbacktest.Config{Secret: secret})
	defer app.Close()
	app.On(command.MessageSendBefore, callbacktest.Allow(), callbacktest.Deny(40001, "slow down"))
	app.On(command.MessageSendAfter, callbacktest.Status(503), callbacktest.Allow())

	d, _ := callback.New(callback.Config{URL: app.URL, Secret: secret, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	ctx := context.Background()
	var sent [][]byte
	for _, text := range []string{"hello", "hello again"} {
		body := []byte(`{"text":"` + text + `"}`)
		r := d.Before(ctx, 1, command.MessageSendBefore, body)
		fmt.Println(text, "->", r.Action, r.Code, r.Msg)
		if r.OK() {
			sent = append(sent, body)
		}
	}
	for _, body := range sent {
		_ = d.After(ctx, 1, command.MessageSendAfter, body)
	}
	_ = d.Close(ctx) // delivers the after-callbacks, retries included

	for _, c := range app.Calls() {
		fmt.Println(c.Command, string(c.Body), "verified:", c.Verified, "answer:", c.Answer)
	}
	// Output:
	// hello -> allow 200 success
	// hello again -> deny 40001 slow down
	// message.send.before {"text":"hello"} verified: true answer: allow
	// message.send.before {"text":"hello again"} verified: true answer: deny 40001 "slow down"
	// message.send.after {"text":"hello"} verified: true answer: status 503
	// message.send.after {"text":"hello"} verified: true answer: allow
}

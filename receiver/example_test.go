package receiver_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http/httptest"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/receiver"
)

// An App backend that refuses messages with a banned word, called by an IM
// server's Dispatcher with the same secret.
func Example() {
	const secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // openssl rand -base64 32

	h, err := receiver.New(receiver.Config{Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	h.Handle(command.MessageSendBefore, func(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
		if bytes.Contains(req.Body, []byte("forbidden")) {
			return receiver.Deny(120001, "banned word"), nil
		}
		return receiver.Allow(), nil
	})
	app := httptest.NewServer(h) // in production: http.ListenAndServe(":8989", h)
	defer app.Close()

	d, err := callback.New(callback.Config{URL: app.URL + "/callback", Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close(context.Background())

	for _, text := range []string{"hello", "forbidden fruit"} {
		r := d.Before(context.Background(), 1, command.MessageSendBefore, []byte(`{"text":"`+text+`"}`))
		fmt.Println(text+":", r.Action, r.Code, r.Msg)
	}
	// Output:
	// hello: allow 200 success
	// forbidden fruit: deny 120001 banned word
}

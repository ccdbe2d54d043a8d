// Command customformat shows a wire format of your own: Hooks (format.go),
// implemented outside package callback with package format's public API,
// registered under the name "hooks" and used by a Dispatcher and a
// receiver like the built-in formats. It runs an App backend on a
// loopback port, sends it a Before that the App rewrites and an After, and
// prints what happened.
//
//	go run ./examples/customformat
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	app, err := receiver.New(receiver.Config{Protocol: Hooks, Logger: logger})
	if err != nil {
		return err
	}
	app.Handle("message.before", func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		return receiver.Rewrite(json.RawMessage(`{"text":"hello, ****"}`)), nil
	})
	app.Handle("message.after", func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		fmt.Printf("App: %s %s\n", req.Command, req.Body)
		return receiver.Allow(), nil
	})
	srv := httptest.NewServer(app)
	defer srv.Close()

	d, err := callback.New(callback.Config{URL: srv.URL + "/hooks", Protocol: Hooks, Logger: logger})
	if err != nil {
		return err
	}
	ctx := context.Background()
	body := []byte(`{"from":"alice","text":"hello, spam"}`)
	r := d.Before(ctx, 1, "message.before", body)
	fmt.Printf("IM: Before %s (%s), err %v\n", r.Action, r.Protocol, r.Err)
	if body, err = r.Apply(body); err != nil {
		return err
	}
	if err := d.After(ctx, 1, "message.after", body); err != nil {
		return err
	}
	return d.Close(ctx)
}

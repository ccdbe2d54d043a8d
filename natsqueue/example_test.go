package natsqueue_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// Embedded keeps After events in a NATS server inside the process, stored
// in a directory: events accepted before a restart are delivered after it.
func ExampleEmbedded() {
	delivered := make(chan string, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // at least once: a second delivery is possible
		case delivered <- r.URL.Query().Get("command"):
		default:
		}
	}))
	defer app.Close()

	dir, err := os.MkdirTemp("", "natsqueue-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	q, err := natsqueue.Embedded(ctx, dir, natsqueue.Options{})
	if err != nil {
		panic(err)
	}
	d, err := callback.New(callback.Config{URL: app.URL + "/callback", Queue: q})
	if err != nil {
		panic(err)
	}
	// After returns once JetStream has stored the event.
	if err := d.After(ctx, 10000, callback.MessageSendAfter, []byte(`{"text":"hi"}`)); err != nil {
		fmt.Println("not stored:", err)
	}
	fmt.Println("delivered:", <-delivered)
	// Close closes the queue and stops the embedded server.
	if err := d.Close(ctx); err != nil {
		fmt.Println("close:", err)
	}
	// Output: delivered: message.send.after
}

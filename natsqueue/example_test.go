package natsqueue_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
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
	d, err := callback.New(callback.Config{URL: app.URL + "/callback", Queue: q.ForDispatcher()})
	if err != nil {
		panic(err)
	}
	// After returns once JetStream has stored the event.
	if err := d.After(ctx, 10000, command.MessageSendAfter, []byte(`{"text":"hi"}`)); err != nil {
		fmt.Println("not stored:", err)
	}
	fmt.Println("delivered:", <-delivered)
	// Close closes the queue and stops the embedded server.
	if err := d.Close(ctx); err != nil {
		fmt.Println("close:", err)
	}
	// Output: delivered: message.send.after
}

// The README's "Durable delivery" blocks, quoted verbatim so that they
// compile (readme_test.go at the module root checks the quote). They
// need a store directory and a NATS cluster, so they are not run.
func readmeEmbedded(ctx context.Context) error {
	q, err := natsqueue.Embedded(ctx, "/var/lib/im/callback", natsqueue.Options{})
	if err != nil {
		return err
	}
	d, err := callback.New(callback.Config{URL: "http://127.0.0.1:8989/callback", Queue: q.ForDispatcher()})
	if err != nil {
		q.Close() // until New succeeds, the queue is the caller's
		return err
	}
	defer func() {
		// Not the start-up ctx: once a signal has cancelled it, Close would
		// give up at once. Close closes the queue and stops the embedded server.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	}()
	return nil
}

func readmeCluster(ctx context.Context, url string) error {
	nc, err := nats.Connect("nats://n1:4222,nats://n2:4222,nats://n3:4222",
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(3), // a hung server is left in seconds, not 2 min
		nats.ReconnectWait(500*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer nc.Close() // d.Close closes the queue but not nc, which the caller owns
	q, err := natsqueue.New(ctx, nc, natsqueue.Options{
		Replicas:       3,
		PublishTimeout: 15 * time.Second, // longer than a stream leader's election (4-12 s measured)
	})
	if err != nil {
		return err
	}
	d, err := callback.New(callback.Config{URL: url, Queue: q.ForDispatcher()})
	if err != nil {
		q.Close()
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a fresh deadline, not the start-up ctx
		defer cancel()
		_ = d.Close(ctx)
	}()
	return nil
}

var _, _ = readmeEmbedded, readmeCluster // compiled, not run

package receiver_test

import (
	"bytes"
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/receiver"
)

// readmeVerify is the README's "Verifying in Go" block, quoted verbatim so
// that it compiles (readme_test.go at the module root checks the quote).
// It serves on :8989 until the process ends, so it is not run; Example
// runs the same calls.
func readmeVerify() {
	h, err := receiver.New(receiver.Config{Secret: os.Getenv("CALLBACK_SECRET"), Dedup: 100_000})
	if err != nil {
		log.Fatal(err) // a secret that does not parse
	}
	h.Handle(command.MessageSendBefore, func(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
		if bytes.Contains(req.Body, []byte("forbidden")) {
			return receiver.Deny(120001, "banned word"), nil
		}
		return receiver.Allow(), nil
	})
	srv := &http.Server{
		Addr:              ":8989",
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,  // the header is read before the Handler runs
		ReadTimeout:       15 * time.Second, // header and body
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	log.Fatal(srv.ListenAndServe())
}

var _ = readmeVerify // compiled, not run

// Command chat is a small IM server on the callback library: users log in
// over a websocket, send 1:1 and group messages, create groups and add
// members, and a demo App backend decides on each of these through Before
// and hears about them through After.
//
//	go run ./examples/chat
//
// then open http://127.0.0.1:8000 in two browser tabs.
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/imcallback/callback"
)

//go:embed index.html
var page []byte

const appID = 10000

func main() {
	imAddr := flag.String("addr", "127.0.0.1:8000", "address of the chat server (web page and /ws)")
	appAddr := flag.String("app", "127.0.0.1:8989", "address of the demo App backend")
	flag.Parse()
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *imAddr, *appAddr, os.Stdout); err != nil {
		log.Fatalf("chat: %v", err)
	}
}

// run serves the demo App backend and the chat server until ctx ends.
func run(ctx context.Context, imAddr, appAddr string, out *os.File) error {
	logger := slog.New(slog.NewTextHandler(out, nil))
	app := newAppBackend(logger)
	appLn, err := net.Listen("tcp", appAddr)
	if err != nil {
		return fmt.Errorf("App backend: %w", err)
	}
	appSrv := &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = appSrv.Serve(appLn) }()
	defer appSrv.Close()

	d, err := callback.New(callback.Config{URL: "http://" + appLn.Addr().String() + "/callback", Logger: logger})
	if err != nil {
		return err
	}
	imLn, err := net.Listen("tcp", imAddr)
	if err != nil {
		_ = d.Close(ctx)
		return fmt.Errorf("chat server: %w", err)
	}
	chat := newServer(d, appID, logger)
	imSrv := &http.Server{Handler: newMux(chat), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = imSrv.Serve(imLn) }()

	fmt.Fprintf(out, "chat server on http://%s (open it in two browser tabs), App backend on http://%s/callback\n", imLn.Addr(), appLn.Addr())
	<-ctx.Done()

	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = imSrv.Shutdown(shutdown)
	chat.closeAll()
	return d.Close(shutdown) // deliver the after-events still queued
}

// newMux serves the page at / and the websocket at /ws.
func newMux(s *server) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ws", s)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	return mux
}

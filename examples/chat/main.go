// Command chat is a small IM server on the callback library: users log in
// over a websocket, send 1:1 and group messages, create groups and add
// members, and a demo App backend decides on each of these through Before
// and hears about them through After.
//
//	go run ./examples/chat
//
// then open http://127.0.0.1:8000 in two browser tabs.
//
// It speaks Tencent Cloud IM's protocol by default, because only that one
// can say "drop": a message with "psst" is then dropped (the sender is told
// it was sent; nobody receives it), next to denied ("spam"), rewritten
// ("darn") and allowed messages. On Tencent it sends Tencent's command
// names and body shapes (C2C.CallbackBeforeSendMsg with From_Account,
// To_Account and a MsgBody of TIMTextElem elements, Group.* for groups),
// and the App answers rewrites in MsgBody and refusals in
// RefusedMembers_Account. -protocol seed uses the seed design's protocol,
// names and bodies instead, where the App's drop can only be answered as a
// deny. The chat server asks the Dispatcher (Dispatcher.Endpoint) which
// protocol the App speaks before it builds each body.
// The callbacks are signed with -secret ($CALLBACK_SECRET), or with a
// secret made up for the run.
//
// The page shows every callback next to the chat, from the Dispatcher's
// attempt log, under the webhook-ids of the messages' ids (m7/before,
// m7/after), marked as the App backend's decision or the Dispatcher's
// fail-open; its buttons make the App backend healthy, slow or down
// (POST /app/mode) to show fail-open, the breaker and After's retries.
// The inspector is at /inspector/, without authorisation: fine for this
// loopback demo only.
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

//go:embed index.html
var page []byte

const appID = 10000

// options are the demo's flags.
type options struct {
	imAddr, appAddr string
	protocol        callback.Protocol
	secret          string
}

func main() {
	var o options
	flag.StringVar(&o.imAddr, "addr", "127.0.0.1:8000", "address of the chat server (web page and /ws)")
	flag.StringVar(&o.appAddr, "app", "127.0.0.1:8989", "address of the demo App backend")
	flag.TextVar(&o.protocol, "protocol", callback.Tencent, "callback protocol: tencent (can drop) or appcommand (cannot)")
	flag.StringVar(&o.secret, "secret", os.Getenv("CALLBACK_SECRET"), "callback secret: a whsec_ secret for seed, a token for tencent; default $CALLBACK_SECRET, or one made up for the run")
	flag.Parse()
	log.SetFlags(0)
	if o.secret == "" {
		o.secret = newSecret(o.protocol)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		log.Fatalf("chat: %v", err)
	}
}

// newSecret makes up a secret for p.
func newSecret(p callback.Protocol) string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	if p == callback.Tencent {
		return hex.EncodeToString(key)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// run serves the demo App backend and the chat server until ctx ends.
func run(ctx context.Context, o options, out io.Writer) error {
	logger := slog.New(slog.NewTextHandler(out, nil))
	app, err := newAppBackend(o.protocol, o.secret, logger)
	if err != nil {
		return fmt.Errorf("app backend: %w", err)
	}
	appLn, err := net.Listen("tcp", o.appAddr)
	if err != nil {
		return fmt.Errorf("app backend: %w", err)
	}
	appSrv := &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = appSrv.Serve(appLn) }()
	defer appSrv.Close()

	d, err := callback.New(dispatcherConfig("http://"+appLn.Addr().String()+"/callback", o.protocol, o.secret, logger))
	if err != nil {
		return err
	}
	imLn, err := net.Listen("tcp", o.imAddr)
	if err != nil {
		_ = d.Close(ctx)
		return fmt.Errorf("chat server: %w", err)
	}
	chat := newServer(d, appID, logger, app.mode)
	imSrv := &http.Server{Handler: newMux(chat, app), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = imSrv.Serve(imLn) }()

	fmt.Fprintf(out, "chat server on http://%s (open it in two browser tabs), App backend on http://%s/callback (%s protocol, signed)\n",
		imLn.Addr(), appLn.Addr(), o.protocol)
	fmt.Fprintln(out, `try: "spam" is denied, "darn" is masked, "psst" is dropped (tencent only), members named bot* are refused;`)
	fmt.Fprintln(out, `the page's buttons make the App backend down or slow (POST /app/mode), to show fail-open, the breaker and After's retries`)
	<-ctx.Done()

	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = imSrv.Shutdown(shutdown)
	chat.closeAll()
	return d.Close(shutdown) // deliver the after-events still queued
}

// dispatcherConfig is the demo's Dispatcher: the library's defaults (a
// 2 s timeout, fail-open, a breaker that opens after 5 failures in a row
// and probes after 5 s) but for After's retries, which here go on for about
// 2 minutes, at most 4 s apart, so that events held while the App backend
// is down are delivered within seconds of its coming back.
func dispatcherConfig(url string, p callback.Protocol, secret string, logger *slog.Logger) callback.Config {
	return callback.Config{
		URL:          url,
		Protocol:     p,
		Secret:       secret,
		Logger:       logger,
		Retries:      30,
		RetryWaitMin: 500 * time.Millisecond,
		RetryWaitMax: 4 * time.Second,
	}
}

// newMux serves the page at /, the websocket at /ws, the App backend's
// mode at /app/mode and the Dispatcher's inspector at /inspector/.
//
// The inspector is mounted without authorisation because this is a demo
// on a loopback address: an IM server mounts it on its admin listener,
// behind its own authentication, with an Options.Authorize.
func newMux(s *server, app *appBackend) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ws", s)
	mux.Handle("/inspector/", http.StripPrefix("/inspector", inspector.New(s.d, inspector.Options{})))
	mux.HandleFunc("GET /app/mode", func(w http.ResponseWriter, _ *http.Request) { writeMode(w, app.mode()) })
	mux.HandleFunc("POST /app/mode", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Mode string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&req); err != nil {
			http.Error(w, `want {"mode":"healthy"|"slow"|"down"}`, http.StatusBadRequest)
			return
		}
		if err := app.setMode(req.Mode); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeMode(w, app.mode())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	return mux
}

// writeMode answers {"mode": mode}.
func writeMode(w http.ResponseWriter, mode string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Mode string `json:"mode"`
	}{mode})
}

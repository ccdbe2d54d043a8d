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
// Messages fail open (the App backend down, they still go through);
// group creation fails closed (Rule.FailClosed: no group without the
// App's say). After events go through the embedded durable queue
// (natsqueue.Embedded) in a temporary directory removed at exit, or in
// -store DIR, kept: an event the App backend does not take within its
// few attempts is dead-lettered, kept, and replayable from the page or
// the inspector. -memory uses the memory queue instead, which keeps no
// dead letters.
//
// The page shows every callback next to the chat, from the Dispatcher's
// attempt log, under the webhook-ids of the messages' ids (m7/before,
// m7/after); its buttons make the App backend healthy, slow or down
// (POST /app/mode) to show fail-open, fail-closed, the breaker, After's
// retries and dead letters. The inspector is at /inspector/; it and
// replays (POST /replay) answer requests from a loopback address only:
// fine for a demo, where an IM server puts them behind its own admin
// authentication.
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
	"github.com/imcallback/callback/natsqueue"
)

//go:embed index.html
var page []byte

const appID = 10000

// options are the demo's flags.
type options struct {
	imAddr, appAddr string
	protocol        callback.Protocol
	secret          string
	memory          bool   // the memory queue instead of the durable one
	store           string // the durable queue's directory; "" means a temporary one
}

func main() {
	var o options
	flag.StringVar(&o.imAddr, "addr", "127.0.0.1:8000", "address of the chat server (web page and /ws)")
	flag.StringVar(&o.appAddr, "app", "127.0.0.1:8989", "address of the demo App backend")
	flag.TextVar(&o.protocol, "protocol", callback.Tencent, "callback protocol: tencent (can drop) or appcommand (cannot)")
	flag.StringVar(&o.secret, "secret", os.Getenv("CALLBACK_SECRET"), "callback secret: a whsec_ secret for seed, a token for tencent; default $CALLBACK_SECRET, or one made up for the run")
	flag.BoolVar(&o.memory, "memory", false, "queue After events in memory: no dead letters are kept")
	flag.StringVar(&o.store, "store", "", "directory of the durable queue, kept at exit; default a temporary one, removed at exit")
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

	var q *natsqueue.Queue
	where := "in memory: no dead letters are kept"
	if !o.memory {
		dir := o.store
		if dir == "" {
			if dir, err = os.MkdirTemp("", "imcallback-chat-"); err != nil {
				return fmt.Errorf("durable queue: %w", err)
			}
			defer os.RemoveAll(dir)
		}
		if q, err = openQueue(ctx, dir, logger); err != nil {
			return err
		}
		where = "in the embedded durable queue in " + dir
	}
	d, err := callback.New(dispatcherConfig("http://"+appLn.Addr().String()+"/callback", o.protocol, o.secret, logger, q))
	if err != nil {
		if q != nil {
			_ = q.Close()
		}
		return err
	}
	imLn, err := net.Listen("tcp", o.imAddr)
	if err != nil {
		_ = d.Close(ctx)
		return fmt.Errorf("chat server: %w", err)
	}
	chat := newServer(d, appID, logger, app.mode, storeOf(q))
	imSrv := &http.Server{Handler: newMux(chat, app), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = imSrv.Serve(imLn) }()

	fmt.Fprintf(out, "chat server on http://%s (open it in two browser tabs), App backend on http://%s/callback (%s protocol, signed)\n",
		imLn.Addr(), appLn.Addr(), o.protocol)
	fmt.Fprintln(out, `try: "spam" is denied, "darn" is masked, "psst" is dropped (tencent only), members named bot* are refused;`)
	fmt.Fprintln(out, `the page's buttons make the App backend down or slow (POST /app/mode), to show fail-open, fail-closed, the breaker and After's retries;`)
	fmt.Fprintf(out, "After events wait %s\n", where)
	<-ctx.Done()

	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = imSrv.Shutdown(shutdown)
	chat.closeAll()
	return d.Close(shutdown) // deliver the after-events still queued; closes q
}

// openQueue starts the embedded durable queue, storing in dir.
func openQueue(ctx context.Context, dir string, logger *slog.Logger) (*natsqueue.Queue, error) {
	q, err := natsqueue.Embedded(ctx, dir, natsqueue.Options{
		AckWait: 5 * time.Second, // events waiting at shutdown come back this soon after a restart on -store
		Logger:  logger,
	})
	if err != nil {
		return nil, fmt.Errorf("durable queue: %w", err)
	}
	return q, nil
}

// storeOf returns q as the chat server's dead-letter store, nil (no
// store, not a nil *Queue in an interface) for the memory queue.
func storeOf(q *natsqueue.Queue) deadLetterStore {
	if q == nil {
		return nil
	}
	return q
}

// demoSchedule is the demo's RetrySchedule for the durable queue: four
// attempts within about 7 s (more while the breaker is open, which
// postpones them), so that an event the App backend does not take is
// dead-lettered while a person watches. A real IM server keeps the
// default, 5 s up to 10 h.
var demoSchedule = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}

// failClosed are the kinds of callback whose failure denies: no group is
// created without the App's say. Messages fail open.
var failClosed = []int{kindCreateBefore}

// dispatcherConfig is the demo's Dispatcher: the library's defaults (a
// 2 s timeout, fail-open, a breaker that opens after 5 failures in a row
// and probes after 5 s) but for group creation, which fails closed, and
// After's retries: with the durable queue q, demoSchedule; with the
// memory queue (q nil), about 2 minutes of them, at most 4 s apart, so
// that events held while the App backend is down are delivered within
// seconds of its coming back.
func dispatcherConfig(url string, p callback.Protocol, secret string, logger *slog.Logger, q *natsqueue.Queue) callback.Config {
	cfg := callback.Config{
		URL:      url,
		Protocol: p,
		Secret:   secret,
		Logger:   logger,
		Commands: map[string]callback.Rule{},
	}
	for _, kind := range failClosed {
		cfg.Commands[dialect{p}.command(kind, true)] = callback.Rule{FailClosed: true}
	}
	if q != nil {
		cfg.Queue, cfg.RetrySchedule = q.ForDispatcher(), demoSchedule
		return cfg
	}
	cfg.Retries, cfg.RetryWaitMin, cfg.RetryWaitMax = 30, 500*time.Millisecond, 4*time.Second
	return cfg
}

// newMux serves the page at /, the websocket at /ws, the App backend's
// mode at /app/mode, replays at /replay and the Dispatcher's inspector at
// /inspector/, with a link back to the chat.
//
// The inspector and replays answer loopback addresses only (fromLoopback)
// because this is a demo: an IM server mounts the inspector on its admin
// listener, behind its own authentication, with an Options.Authorize.
func newMux(s *server, app *appBackend) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ws", s)
	ins := inspector.Options{Authorize: fromLoopback, BackURL: "/", BackLabel: "Back to the chat"}
	if s.dead != nil {
		ins.DeadLetters = s.dead
	}
	mux.Handle("/inspector/", http.StripPrefix("/inspector", inspector.New(s.d, ins)))
	mux.Handle("POST /replay", http.NewCrossOriginProtection().Handler(http.HandlerFunc(s.replay)))
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

// fromLoopback reports whether r came from a loopback address: the
// demo's only authorisation, for the inspector and replays.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// replay answers POST /replay {"id": webhook-id}: the dead letter of that
// After event goes back into the durable queue, for its attempts anew.
func (s *server) replay(w http.ResponseWriter, r *http.Request) {
	answer := func(status int, key, value string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{key: value})
	}
	if !fromLoopback(r) {
		answer(http.StatusForbidden, "error", "replay is allowed from this machine only (a loopback address)")
		return
	}
	if s.dead == nil {
		answer(http.StatusNotFound, "error", "no dead letters are kept: the demo runs with -memory")
		return
	}
	var req struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&req); err != nil || req.ID == "" {
		answer(http.StatusBadRequest, "error", `want {"id": webhook-id}`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	switch err := s.dead.ReplayOne(ctx, s.appID, req.ID); {
	case errors.Is(err, callback.ErrNotFound):
		answer(http.StatusNotFound, "error", "no dead letter of "+req.ID+": never dead-lettered, or already replayed")
	case err != nil:
		s.log.Warn("replay failed", "id", req.ID, "error", err)
		answer(http.StatusBadGateway, "error", "the durable queue did not take the replay; try again")
	default:
		answer(http.StatusOK, "replayed", req.ID)
	}
}

// writeMode answers {"mode": mode}.
func writeMode(w http.ResponseWriter, mode string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Mode string `json:"mode"`
	}{mode})
}

// Command quickstart runs the seed design's two services in one process: an
// App backend on 127.0.0.1:8989 (/callback) and an IM business service on
// 127.0.0.1:8000 that calls it through the callback library before and after
// each event. It sends a few events through the IM service, prints what
// happened and exits 0.
//
//	go run ./examples/quickstart                 # both sides and the demo
//	go run ./examples/quickstart -only app       # just the App backend, until Ctrl-C
//	go run ./examples/quickstart -only im -callback http://host:8989/callback
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/imcallback/callback"
)

func main() {
	appAddr := flag.String("app", "127.0.0.1:8989", "address of the App backend")
	imAddr := flag.String("im", "127.0.0.1:8000", "address of the IM business service")
	callbackURL := flag.String("callback", "", "callback URL the IM service calls (default: the App backend's /callback)")
	only := flag.String("only", "", `run one side alone until interrupted: "app" or "im"`)
	flag.Parse()
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var err error
	switch *only {
	case "":
		err = demo(ctx, *appAddr, *imAddr, *callbackURL)
	case "app":
		err = serveUntilDone(ctx, *appAddr, newApp(), "App backend")
	case "im":
		if *callbackURL == "" {
			*callbackURL = "http://" + *appAddr + "/callback"
		}
		err = runIM(ctx, *imAddr, *callbackURL)
	default:
		err = fmt.Errorf("-only must be app or im, not %q", *only)
	}
	if err != nil {
		log.Fatalf("quickstart: %v", err)
	}
}

// demo starts both services, drives a few events through the IM service and
// prints what happened.
func demo(ctx context.Context, appAddr, imAddr, callbackURL string) error {
	app := newApp()
	appSrv, appAddr, err := start(appAddr, app)
	if err != nil {
		return err
	}
	defer appSrv.Close()
	if callbackURL == "" {
		callbackURL = "http://" + appAddr + "/callback"
	}

	im, err := newIM(callbackURL)
	if err != nil {
		return err
	}
	imSrv, imAddr, err := start(imAddr, im)
	if err != nil {
		_ = im.d.Close(ctx)
		return err
	}
	defer imSrv.Close()
	fmt.Printf("App backend on http://%s/callback, IM service on http://%s\n\n", appAddr, imAddr)

	base := "http://" + imAddr
	steps := []struct{ path, body string }{
		{"/message/send", `{"from":"alice","to":"bob","text":"hello bob"}`},
		{"/message/send", `{"from":"alice","to":"bob","text":"buy spam now"}`},
		{"/message/send", `{"from":"bob","to":"alice","text":"darn, I missed the bus"}`},
		{"/group/member/add", `{"groupId":"g1","members":["carol","bot-42","dave"]}`},
	}
	for _, s := range steps {
		res, err := http.Post(base+s.path, "application/json", strings.NewReader(s.body))
		if err != nil {
			return err
		}
		answer, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Printf("IM  %s %s\n    -> %s\n", s.path, s.body, bytes.TrimSpace(answer))
	}

	// Close drains the After queue: every after-event reaches the App.
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := im.d.Close(closeCtx); err != nil {
		return fmt.Errorf("draining after-events: %w", err)
	}
	fmt.Printf("\nThe App backend received %d before- and %d after-callbacks.\n", app.count("before"), app.count("after"))
	return nil
}

// start listens on addr and serves h in the background. It returns the
// address it listens on (port 0 picks a free one).
func start(addr string, h http.Handler) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listening on %s (is another demo running? choose ports with -app and -im): %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr().String(), nil
}

func serveUntilDone(ctx context.Context, addr string, h http.Handler, name string) error {
	srv, addr, err := start(addr, h)
	if err != nil {
		return err
	}
	fmt.Printf("%s on http://%s (Ctrl-C to stop)\n", name, addr)
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

func runIM(ctx context.Context, addr, callbackURL string) error {
	im, err := newIM(callbackURL)
	if err != nil {
		return err
	}
	err = serveUntilDone(ctx, addr, im, "IM service calling "+callbackURL)
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, im.d.Close(closeCtx))
}

// app is the customer's App backend: it denies banned words, masks rude
// ones, refuses bots in groups and logs after-events.
type app struct {
	mu     sync.Mutex
	counts map[string]int
}

func newApp() *app { return &app{counts: map[string]int{}} }

func (a *app) count(kind string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[kind]
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	command := r.URL.Query().Get("command")
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || r.URL.Path != "/callback" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	kind := "before"
	if strings.HasSuffix(command, ".after") {
		kind = "after"
	}
	a.mu.Lock()
	a.counts[kind]++
	a.mu.Unlock()

	if kind == "after" {
		fmt.Printf("APP after-callback %s app=%s %s\n", command, r.URL.Query().Get("appId"), body)
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch command {
	case "message.send.before":
		var m struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(body, &m)
		switch {
		case strings.Contains(m.Text, "spam"):
			fmt.Fprint(w, `{"code":40001,"msg":"message contains a banned word"}`)
		case strings.Contains(m.Text, "darn"):
			var msg map[string]any
			_ = json.Unmarshal(body, &msg)
			msg["text"] = strings.ReplaceAll(m.Text, "darn", "d**n")
			data, _ := json.Marshal(msg)
			fmt.Fprintf(w, `{"code":200,"msg":"rewritten","data":%s}`, data)
		default:
			fmt.Fprint(w, `{"code":200,"msg":"success"}`)
		}
	case "group.member.add.before":
		var g struct {
			Members []string `json:"members"`
		}
		_ = json.Unmarshal(body, &g)
		kept := []string{}
		for _, m := range g.Members {
			if !strings.HasPrefix(m, "bot") {
				kept = append(kept, m)
			}
		}
		data, _ := json.Marshal(kept)
		fmt.Fprintf(w, `{"code":200,"msg":"success","data":%s}`, data)
	default:
		fmt.Fprint(w, `{"code":200,"msg":"success"}`)
	}
}

// im is the IM business service: it asks the App before each event and
// tells it after.
type im struct {
	d   *callback.Dispatcher
	mux *http.ServeMux
}

const appID = 10000

func newIM(callbackURL string) (*im, error) {
	d, err := callback.New(callback.Config{
		URL:    callbackURL,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return nil, err
	}
	s := &im{d: d, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /message/send", s.sendMessage)
	s.mux.HandleFunc("POST /group/member/add", s.addMembers)
	return s, nil
}

func (s *im) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// reply writes the IM's answer to its client in the seed's shape.
func reply(w http.ResponseWriter, code int, msg string, data any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "msg": msg, "data": data})
}

func (s *im) sendMessage(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || !json.Valid(body) {
		reply(w, 400, "invalid message", nil)
		return
	}
	resp := s.d.Before(r.Context(), appID, "message.send.before", body)
	if !resp.OK() {
		reply(w, resp.Code, resp.Msg, nil) // the App's code and message go to the client
		return
	}
	if resp.Data != nil {
		body = resp.Data // the App rewrote the message
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	// ... the message would be stored and pushed to its receiver here ...
	if err := s.d.After(r.Context(), appID, "message.send.after", body); err != nil {
		slog.Warn("after-callback not queued", "error", err)
	}
	reply(w, 200, "delivered", m)
}

func (s *im) addMembers(w http.ResponseWriter, r *http.Request) {
	var req struct {
		GroupID string   `json:"groupId"`
		Members []string `json:"members"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || json.Unmarshal(body, &req) != nil {
		reply(w, 400, "invalid request", nil)
		return
	}
	resp := s.d.Before(r.Context(), appID, "group.member.add.before", body)
	if !resp.OK() {
		reply(w, resp.Code, resp.Msg, nil)
		return
	}
	if resp.Data != nil {
		// The App's data replaces the member list.
		var members []string
		if err := json.Unmarshal(resp.Data, &members); err == nil {
			req.Members = members
		}
	}
	after, _ := json.Marshal(req)
	if err := s.d.After(r.Context(), appID, "group.member.add.after", after); err != nil {
		slog.Warn("after-callback not queued", "error", err)
	}
	reply(w, 200, "members added", req)
}

package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/imcallback/callback"
)

// afterEvent is an after-callback the demo App backend received.
type afterEvent struct {
	Command string
	Body    string
}

// appBackend is the demo App backend, speaking the seed protocol: it answers
// before-callbacks with decide's decision and logs after-callbacks.
type appBackend struct {
	log *slog.Logger

	mu     sync.Mutex
	afters []afterEvent
	notify chan struct{} // signalled on each after-callback, for tests
}

func newAppBackend(log *slog.Logger) *appBackend {
	return &appBackend{log: log, notify: make(chan struct{}, 1)}
}

func (a *appBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/callback" {
		http.Error(w, "POST /callback only", http.StatusNotFound)
		return
	}
	command := r.URL.Query().Get("command")
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || !json.Valid(body) {
		http.Error(w, "the body must be JSON", http.StatusBadRequest)
		return
	}
	if strings.HasSuffix(command, ".after") {
		a.log.Info("App: after-callback", "command", command, "body", string(body))
		a.mu.Lock()
		a.afters = append(a.afters, afterEvent{command, string(body)})
		a.mu.Unlock()
		select {
		case a.notify <- struct{}{}:
		default:
		}
		return
	}

	d := decide(command, body)
	answer := map[string]any{"code": callback.CodeOK, "msg": "success"}
	switch d.action {
	case callback.Deny:
		answer = map[string]any{"code": d.code, "msg": d.msg}
	case callback.Drop:
		// The seed protocol has no drop: an App on it can only deny.
		answer = map[string]any{"code": codeBanned, "msg": "message refused"}
	}
	if d.data != nil {
		answer["data"] = d.data
	}
	a.log.Info("App: before-callback", "command", command, "decision", d.action.String())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// received returns the after-callbacks received so far.
func (a *appBackend) received() []afterEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]afterEvent(nil), a.afters...)
}

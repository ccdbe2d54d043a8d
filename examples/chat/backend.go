package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
)

// afterEvent is an after-callback the demo App backend received.
type afterEvent struct {
	Command string
	Body    string
}

// Modes of the demo App backend, which the page's buttons switch between.
const (
	modeHealthy = "healthy" // it answers each callback at once
	modeSlow    = "slow"    // it answers after slowDelay, past the Dispatcher's timeout
	modeDown    = "down"    // it answers every callback 503 Service Unavailable
)

// errMode is the error of a mode that is none of the above.
var errMode = errors.New("mode must be healthy, slow or down")

// defaultSlowDelay is how long the App takes to answer when slow: longer
// than the Dispatcher's 2 s timeout, so Before fails open.
const defaultSlowDelay = 3 * time.Second

// maxSlowRead is how much of a body the slow App reads before it waits:
// more than the receiver's default MaxBodyBytes, which then applies.
const maxSlowRead = 1<<20 + 1

// appBackend is the demo App backend, on the receiver package: it verifies
// each callback's signature, answers before-callbacks with decide's
// decision and logs after-callbacks. Its mode makes it slow or down on
// demand, to show how the Dispatcher fails open and retries.
type appBackend struct {
	*receiver.Handler
	log       *slog.Logger
	speaks    dialect       // the commands and body shapes of the App's protocol
	slowDelay time.Duration // how long it takes to answer in modeSlow; set before it serves
	state     atomic.Value  // its mode: modeHealthy, modeSlow or modeDown

	mu     sync.Mutex
	afters []afterEvent
	notify chan struct{} // signalled on each after-callback, for tests
}

// newAppBackend returns the demo App backend for protocol p, verifying
// signatures with secret (none if empty).
func newAppBackend(p callback.Protocol, secret string, log *slog.Logger) (*appBackend, error) {
	h, err := receiver.New(receiver.Config{Protocol: p, Secret: secret, Dedup: 10000, Logger: log})
	if err != nil {
		return nil, err
	}
	a := &appBackend{Handler: h, log: log, speaks: dialect{p}, slowDelay: defaultSlowDelay, notify: make(chan struct{}, 1)}
	a.state.Store(modeHealthy)
	before, after := a.speaks.commands()
	for _, cmd := range before {
		h.Handle(cmd, a.before)
	}
	for _, cmd := range after {
		h.Handle(cmd, a.after)
	}
	return a, nil
}

// ServeHTTP answers a callback as the App's mode says: at once, late, or
// with a 503.
func (a *appBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch a.mode() {
	case modeDown:
		http.Error(w, "the demo App backend is down (the page's Down button)", http.StatusServiceUnavailable)
		return
	case modeSlow:
		// Read the body first: only then does net/http watch the
		// connection and end r's context when the Dispatcher gives up.
		b, err := io.ReadAll(io.LimitReader(r.Body, maxSlowRead))
		if err != nil {
			return
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		t := time.NewTimer(a.slowDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done(): // the Dispatcher gave up
			return
		}
	}
	a.Handler.ServeHTTP(w, r)
}

// mode returns the App's mode.
func (a *appBackend) mode() string { return a.state.Load().(string) }

// setMode switches the App to mode, or returns errMode.
func (a *appBackend) setMode(mode string) error {
	switch mode {
	case modeHealthy, modeSlow, modeDown:
		if old := a.state.Swap(mode); old != mode {
			a.log.Info("App: mode changed", "from", old, "to", mode)
		}
		return nil
	}
	return errMode
}

func (a *appBackend) before(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
	d := decide(a.speaks, req.Command, req.Body)
	a.log.InfoContext(ctx, "App: before-callback", "command", req.Command, "decision", d.Action.String(), "rewritten", d.Data != nil)
	return d, nil
}

func (a *appBackend) after(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
	a.log.InfoContext(ctx, "App: after-callback", "command", req.Command, "body", string(req.Body))
	a.mu.Lock()
	a.afters = append(a.afters, afterEvent{req.Command, string(req.Body)})
	a.mu.Unlock()
	select {
	case a.notify <- struct{}{}:
	default:
	}
	return receiver.Allow(), nil
}

// received returns the after-callbacks received so far.
func (a *appBackend) received() []afterEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]afterEvent(nil), a.afters...)
}

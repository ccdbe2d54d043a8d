package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
)

// afterEvent is an after-callback the demo App backend received.
type afterEvent struct {
	Command string
	Body    string
}

// appBackend is the demo App backend, on the receiver package: it verifies
// each callback's signature, answers before-callbacks with decide's
// decision and logs after-callbacks.
type appBackend struct {
	*receiver.Handler
	log    *slog.Logger
	speaks dialect // the commands and body shapes of the App's protocol

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
	a := &appBackend{Handler: h, log: log, speaks: dialect{p}, notify: make(chan struct{}, 1)}
	before, after := a.speaks.commands()
	for _, cmd := range before {
		h.Handle(cmd, a.before)
	}
	for _, cmd := range after {
		h.Handle(cmd, a.after)
	}
	return a, nil
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

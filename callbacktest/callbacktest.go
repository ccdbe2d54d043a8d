// Package callbacktest is a fake App backend for the tests of an IM server
// that uses package callback: a real HTTP server on httptest that answers
// callbacks as scripted per command (allow, deny, drop, rewrite), can be
// slow or broken on demand (latency, hangs, 5xx, connection resets,
// garbage and slow bodies), and records every callback it receives, with
// helpers that wait for them.
//
//	srv := callbacktest.NewServer(t, callbacktest.Config{Secret: secret})
//	srv.On(command.MessageSendBefore, callbacktest.Deny(40001, "banned word"))
//	srv.On(command.MessageSendAfter, callbacktest.Status(503), callbacktest.Allow()) // fails once
//	d, _ := callback.New(callback.Config{URL: srv.URL, Secret: secret})
//	// ... drive the IM server ...
//	got := srv.WaitFor(time.Second, callbacktest.Command(command.MessageSendAfter))
//
// It speaks every protocol (Config.Protocol) and, given Config.Secret,
// verifies each request's signature with package receiver, as a real App
// backend would: a request that fails verification is answered 401 and
// recorded with Call.Rejected saying why.
package callbacktest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcallback/callback/format"
	"github.com/imcallback/callback/internal/wire"
	"github.com/imcallback/callback/receiver"
)

// maxBody caps a request body, as receiver's default does.
const maxBody = 1 << 20

// Config configures a Server. The zero Config is an App backend on the
// AppCommand protocol that checks no signature and allows everything.
type Config struct {
	// Protocol is the wire format the IM server sends: callback.AppCommand
	// (the zero value), callback.Tencent, callback.OpenIM or a format of
	// your own.
	Protocol format.Protocol
	// Secret, when set, is what the Server verifies signatures with, as
	// receiver.Config.Secret: Standard Webhooks secrets for AppCommand and
	// OpenIM, tokens for Tencent. Empty means no verification.
	Secret string
	// Default answers the commands that have no script (see Server.On).
	// The zero Answer allows.
	Default Answer
}

// Call is one request the Server received.
type Call struct {
	Time time.Time // when it arrived
	// ID is the webhook-id header (OpenIM's operationID when there is
	// none); AppID, Command, ClientIP and Platform are read as the
	// protocol addresses them (AppCommand's appId and command, Tencent's
	// SdkAppid, CallbackCommand, ClientIP and OptPlatform, OpenIM's last
	// path segment). AppID is 0 when the request has none or it is not a
	// number.
	ID       string
	AppID    int
	Command  string
	ClientIP string
	Platform string
	Query    url.Values
	Header   http.Header
	Body     []byte // exactly as received
	// Verified reports that the request's signature was checked against
	// Config.Secret and matched. Always false without a Secret.
	Verified bool
	// Rejected says why the request was refused before any answer was
	// chosen, for example "no webhook-signature matches" or "body is not
	// valid JSON"; it was answered with a 4xx status, as package receiver
	// answers. Empty for an accepted request.
	Rejected string
	// Answer is the scripted answer the request got; the zero Answer for a
	// rejected request.
	Answer Answer
}

// Server is a fake App backend listening on a loopback port. Create it
// with NewServer; it closes when the test ends. A Server is safe for
// concurrent use.
//
// The probe of callback.Dispatcher.Check (format.CheckCommand, also
// callback.CheckCommand) is answered with an allow, whatever
// Config.Default says, and recorded. A script for it
// (Server.On(callback.CheckCommand, ...)) applies its faults
// and delays, Status(500) or Hang() for example, but not its decision: the
// probe is allowed, as package receiver allows it.
type Server struct {
	// URL is the callback URL to configure the IM server with:
	// http://127.0.0.1:PORT/callback.
	URL string

	t       testing.TB
	secret  bool
	addr    format.Receiver // unkeyed: reads any request's address
	recv    receiver.Config // serve adds the handler and OnReject per request
	http    *httptest.Server
	closing chan struct{} // closed by Close: hanging answers end
	once    sync.Once

	mu      sync.Mutex // guards the fields below
	calls   []Call
	changed chan struct{} // closed and replaced whenever calls grows
	scripts map[string]*script
	def     Answer
}

// script is the queue of answers for one command.
type script struct {
	answers []Answer
	used    int
}

// NewServer starts a Server and closes it when t's test ends. A Config
// that cannot be used (a secret that does not parse) fails t at once.
func NewServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	addr, err := cfg.Protocol.Format().Receiver("", 0)
	if err != nil {
		t.Fatalf("callbacktest: %v", err)
		return nil
	}
	s := &Server{
		t:       t,
		secret:  cfg.Secret != "",
		addr:    addr,
		closing: make(chan struct{}),
		changed: make(chan struct{}),
		scripts: map[string]*script{},
		def:     cfg.Default,
	}
	s.recv = receiver.Config{
		Protocol: cfg.Protocol,
		Secret:   cfg.Secret,
		Logger:   slog.New(slog.DiscardHandler),
	}
	if _, err := receiver.New(s.recv); err != nil {
		t.Fatalf("callbacktest: %v", err)
		return nil
	}
	s.http = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.http.Config.ErrorLog = log.New(io.Discard, "", 0) // resets and hangs are on purpose
	s.http.Start()
	s.URL = s.http.URL + "/callback"
	t.Cleanup(s.Close)
	return s
}

// Close stops the Server: answers that hang or wait end at once, and Close
// returns when every request in flight has ended. Calling it again is
// safe. NewServer arranges for it to run when the test ends.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.http.Close()
	})
}

// On scripts the answers to command: its first callback gets answers[0],
// the next answers[1], and so on; once they run out, the last one repeats.
// On with no answers removes the script, so the command gets
// Config.Default again. Requests rejected before an answer is chosen (a bad
// signature) use up no answer.
func (s *Server) On(command string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(answers) == 0 {
		delete(s.scripts, command)
		return
	}
	s.scripts[command] = &script{answers: slices.Clone(answers)}
}

// next returns the answer for the next callback of command.
func (s *Server) next(command string) Answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.scripts[command]
	if !ok {
		return s.def
	}
	a := sc.answers[min(sc.used, len(sc.answers)-1)]
	sc.used++
	return a
}

// probeAnswer returns the answer to the next probe of
// callback.Dispatcher.Check: the next one scripted for
// format.CheckCommand, with its decision made an allow, or Allow.
func (s *Server) probeAnswer() Answer {
	s.mu.Lock()
	_, scripted := s.scripts[format.CheckCommand]
	s.mu.Unlock()
	if !scripted {
		return Allow()
	}
	a := s.next(format.CheckCommand)
	a.Decision = receiver.Allow()
	return a
}

// Calls returns the requests received so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// WaitN waits until the Server has received at least n requests and
// returns all it has received, oldest first. If that takes longer than
// timeout it fails the test with what it got; call it from the test's
// goroutine.
func (s *Server) WaitN(n int, timeout time.Duration) []Call {
	s.t.Helper()
	calls, ok := s.wait(timeout, func(calls []Call) bool { return len(calls) >= n })
	if !ok {
		s.t.Fatalf("callbacktest: got %d callbacks within %v, want %d%s", len(calls), timeout, n, describe(calls))
	}
	return calls
}

// WaitFor waits until the Server has received a request for which match
// returns true and returns the first such request. If none arrives within
// timeout it fails the test with what it got; call it from the test's
// goroutine.
func (s *Server) WaitFor(timeout time.Duration, match func(Call) bool) Call {
	s.t.Helper()
	var found Call
	calls, ok := s.wait(timeout, func(calls []Call) bool {
		i := slices.IndexFunc(calls, match)
		if i >= 0 {
			found = calls[i]
		}
		return i >= 0
	})
	if !ok {
		s.t.Fatalf("callbacktest: no matching callback within %v%s", timeout, describe(calls))
	}
	return found
}

// Command returns a matcher for WaitFor: a request for command.
func Command(command string) func(Call) bool {
	return func(c Call) bool { return c.Command == command }
}

// wait polls the recorded calls whenever they change until done is true or
// timeout passes.
func (s *Server) wait(timeout time.Duration, done func([]Call) bool) ([]Call, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		calls, changed := slices.Clone(s.calls), s.changed
		s.mu.Unlock()
		if done(calls) {
			return calls, true
		}
		select {
		case <-changed:
		case <-timer.C:
			return calls, false
		}
	}
}

// describe lists calls for a failure message.
func describe(calls []Call) string {
	if len(calls) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; got:")
	for i, c := range calls {
		if i == 10 {
			fmt.Fprintf(&b, "\n\t... and %d more", len(calls)-i)
			break
		}
		fmt.Fprintf(&b, "\n\t%s app %d", c.Command, c.AppID)
		if c.Rejected != "" {
			fmt.Fprintf(&b, " rejected: %s", c.Rejected)
		} else {
			fmt.Fprintf(&b, " answered: %v", c.Answer)
		}
	}
	return b.String()
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	close(s.changed)
	s.changed = make(chan struct{})
}

// outcome is what the receiver did with one request, as its hooks saw it.
type outcome struct {
	reached  bool   // the handler ran: the request passed verification
	answer   Answer // the scripted answer it chose, when reached
	rejected string // why the receiver refused the request; "": it did not
}

// receiverFor returns a receiver.Handler that verifies one request and
// notes in o whether it refused it or which scripted answer it chose. A
// Handler is made per request (New only decodes the secret) so that its
// handler and OnReject can tell serve about this request alone.
func (s *Server) receiverFor(o *outcome) (*receiver.Handler, error) {
	cfg := s.recv
	cfg.Default = func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		o.reached, o.answer = true, s.next(req.Command)
		return o.answer.Decision, nil
	}
	cfg.OnReject = func(_ *http.Request, _ int, reason error) { o.rejected = reason.Error() }
	return receiver.New(cfg)
}

// serve records a request, lets the receiver verify it and encode the
// scripted decision, and then answers or misbehaves as scripted.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return // the sender went away mid-body
	}
	c := Call{
		Time:   time.Now(),
		Query:  r.URL.Query(),
		Header: r.Header.Clone(),
		Body:   body,
	}
	// Unkeyed, Read verifies nothing: it reads the address of any request.
	a, _ := s.addr.Read(r, body, c.Time)
	c.ID, c.AppID, c.Command, c.ClientIP, c.Platform = a.EventID, a.AppID, a.Command, a.ClientIP, a.Platform

	var o outcome
	recv, err := s.receiverFor(&o)
	if err != nil { // not reached: NewServer made one with this Config
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	inner := r.Clone(r.Context())
	inner.Body = io.NopCloser(bytes.NewReader(body))
	inner.ContentLength = int64(len(body))
	out := &buffered{header: http.Header{}}
	recv.ServeHTTP(out, inner)

	switch {
	case o.rejected != "":
		c.Rejected = o.rejected
		s.record(c)
		out.copyTo(w)
	case o.reached:
		c.Verified, c.Answer = s.secret, o.answer
		s.record(c)
		s.answer(w, r, o.answer, out)
	default:
		// The receiver verified and allowed the probe of
		// Dispatcher.Check by itself; a script for it may still make it
		// misbehave.
		c.Verified = s.secret
		a := s.probeAnswer()
		c.Answer = a
		s.record(c)
		s.answer(w, r, a, out)
	}
}

// answer writes a (whose decision the receiver encoded into out) or its
// fault.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, a Answer, out *buffered) {
	if a.delay > 0 && !s.sleep(r.Context(), a.delay) {
		return
	}
	switch a.fault {
	case faultHang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	case faultReset:
		reset(w)
		return
	case faultStatus:
		http.Error(w, http.StatusText(a.status), a.status)
		return
	case faultGarbage:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "<html>this is not JSON</html>")
		return
	}
	if a.slow <= 0 {
		out.copyTo(w)
		return
	}
	for k, v := range out.header {
		w.Header()[k] = v
	}
	w.WriteHeader(out.status)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	body := out.body.Bytes()
	const pieces = 10
	size := max(1, (len(body)+pieces-1)/pieces)
	n := (len(body) + size - 1) / size
	for i := 0; i < len(body); i += size {
		if !s.sleep(r.Context(), a.slow/time.Duration(n)) {
			return
		}
		_, _ = w.Write(body[i:min(i+size, len(body))])
		_ = rc.Flush()
	}
}

// sleep waits d; it reports false if the request or the Server ended first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

// reset closes the request's connection without an answer, with a TCP RST
// (SO_LINGER 0) when the connection is TCP.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // closes the connection without answering
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// buffered is an http.ResponseWriter that keeps what the receiver writes,
// so that serve can write it later, slowly, or not at all.
type buffered struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *buffered) Header() http.Header { return b.header }

func (b *buffered) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *buffered) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *buffered) copyTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.WriteHeader(cmp.Or(b.status, http.StatusOK))
	_, _ = w.Write(b.body.Bytes())
}

// NewSecret returns a fresh random Standard Webhooks secret ("whsec_" and
// the base64 of a 32-byte key), for callback.Config.Secret and
// Config.Secret in AppCommand tests. A Tencent token can be any string without
// spaces.
func NewSecret() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return wire.FormatSecret(key)
}

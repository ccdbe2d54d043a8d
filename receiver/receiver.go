// Package receiver is the App backend's side of imcallback: an http.Handler
// that receives the callbacks an IM server sends with package callback (or
// Tencent Cloud IM's, or OpenIM's), verifies their signatures and
// timestamps, routes them by command to handler functions and writes the
// protocol's answer from what each handler decides.
//
// It imports package format and the built-in formats, not package
// callback: an App backend built on it does not pull in the IM server's
// side (OpenTelemetry, the HTTP retry and circuit-breaker libraries).
//
//	h, err := receiver.New(receiver.Config{Secret: os.Getenv("CALLBACK_SECRET")})
//	if err != nil {
//		log.Fatal(err)
//	}
//	h.Handle(command.MessageSendBefore, func(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
//		if bytes.Contains(req.Body, []byte("spam")) {
//			return receiver.Deny(403, "no spam"), nil
//		}
//		return receiver.Allow(), nil
//	})
//	srv := &http.Server{
//		Addr:              ":8989",
//		Handler:           h,
//		ReadHeaderTimeout: 5 * time.Second,
//		ReadTimeout:       15 * time.Second,
//		WriteTimeout:      30 * time.Second,
//		IdleTimeout:       2 * time.Minute,
//		MaxHeaderBytes:    64 << 10,
//	}
//	log.Fatal(srv.ListenAndServe())
//
// Serve it with an http.Server whose timeouts are set, as above, not with
// http.ListenAndServe: the Handler bounds the body it reads (MaxBodyBytes)
// and how long reading it may take (ReadTimeout), but only the server can
// bound the request header and idle connections.
//
// Requests it rejects get a plain-text body saying why and the status: 405
// for a method other than POST, 413 for a body over Config.MaxBodyBytes, 408
// for a body not read within Config.ReadTimeout, 401 for a missing or wrong
// signature or a timestamp outside the tolerance, 400 for a missing command
// or app ID or a body that is not UTF-8 JSON, and with Config.Dedup 409 for
// a webhook-id replayed under another command or app and 503 when no more
// IDs can be remembered; Config.OnReject is told of each before it is
// answered. A handler's error, or a panic, is answered 500, so
// the sender counts the callback as failed (Before applies its failure
// policy, After retries).
//
// The probe of callback.Dispatcher.Check (command format.CheckCommand)
// is verified like any callback and, once verified, answered with an allow
// by the Handler itself: no handler, Config.Default included, sees it.
//
// Svix's header names (svix-id, svix-timestamp, svix-signature) are
// accepted as well as Standard Webhooks' (webhook-id, webhook-timestamp,
// webhook-signature), so App backends moving from Svix-signed webhooks
// keep working.
package receiver

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/imcallback/callback/format"
	_ "github.com/imcallback/callback/openim"  // registered: Protocol reads "openim"
	_ "github.com/imcallback/callback/tencent" // registered: Protocol reads "tencent"
)

// ErrInvalidConfig is wrapped by New's error for a Config it rejects.
var ErrInvalidConfig = errors.New("receiver: invalid config")

// Defaults applied by New to the zero values of Config.
const (
	defaultMaxBodyBytes = 1 << 20
	defaultReadTimeout  = 10 * time.Second
	// bodyPrealloc is as much of a declared Content-Length as is allocated
	// before any of it arrives; the rest grows as bytes do.
	bodyPrealloc = 16 << 10
)

// Config configures a Handler. The zero value of every field means the
// documented default; the zero Config receives unsigned AppCommand callbacks.
type Config struct {
	// Protocol is the wire format the IM server sends: callback.AppCommand
	// (format.AppCommand, the zero value), callback.Tencent
	// (tencent.Protocol), callback.OpenIM (openim.Protocol), or a format
	// of your own (format.Register).
	Protocol format.Protocol

	// Secret verifies the callbacks; it must match the sender's
	// callback.Config.Secret. Empty means no verification: any request is
	// accepted, so only leave it empty on a trusted network.
	//
	// For AppCommand and OpenIM, one or more Standard Webhooks secrets
	// ("whsec_" + base64 of a 24 to 64 byte key) separated by spaces; a
	// request is genuine if one of its signatures matches one of them. For
	// Tencent, one or more
	// tokens separated by spaces; a request is genuine if its Sign matches
	// one of them. List the new secret next to the old one while keys
	// rotate.
	Secret string

	// Tolerance is how far a request's timestamp (AppCommand's and
	// OpenIM's webhook-timestamp, Tencent's RequestTime) may be from this
	// server's clock, either way. 0 means the format's default: 5 minutes
	// for AppCommand and OpenIM, 1 minute for Tencent. Unused without a
	// Secret.
	Tolerance time.Duration

	// MaxBodyBytes caps the request body; a larger one is answered 413.
	// 0 means 1 MiB. The buffer grows as the body arrives, whatever
	// Content-Length a request declares.
	MaxBodyBytes int64

	// ReadTimeout bounds reading the request body, from the moment the
	// Handler is called: a body still incomplete then is answered 408, so
	// a peer that trickles its body cannot hold the handler. It is applied
	// with http.ResponseController.SetReadDeadline and replaces, for the
	// body, any deadline the http.Server set. 0 means 10 s; a negative value
	// means no bound of the Handler's own (the server's ReadTimeout still
	// applies). The http.Server must still set ReadHeaderTimeout: the header
	// is read before the Handler is called.
	ReadTimeout time.Duration

	// Default handles commands that have no handler. nil means allow them.
	Default HandlerFunc

	// Dedup is how many webhook-ids the Handler may remember at once, with
	// the answer it gave. 0 means off. An ID is remembered from before its
	// handler is called until twice the Tolerance after it was last seen:
	// as long as any request carrying it could still pass the timestamp
	// check. A request that repeats it (an After retry whose answer was
	// lost) gets the first answer without calling its handler again; a
	// repeat arriving while the first is still being handled waits for it;
	// after a handler failed (500), a repeat calls the handler again, so the
	// sender's retry can succeed.
	//
	// With AppCommand or OpenIM and a Secret, the signed webhook-id
	// identifies a request: one that reuses it under another command or app
	// is a replay, answered 409 and never handled, whether the first is
	// answered, being handled or failed. Otherwise (Tencent's Sign covers
	// no ID, or no Secret) a repeat must also have the same command, app
	// and body, and one that differs is another request. The Before and
	// the After of one message are two events with two IDs even when the
	// IM server gives both one callback.WithEventID: Before sends it with
	// "/before" appended.
	//
	// When Dedup IDs are remembered and none has expired, a request with a
	// new ID is answered 503 (the sender retries later) rather than let
	// through unremembered. Size it for the traffic of twice the
	// Tolerance: at 1,000 callbacks/s with the AppCommand default of 5 minutes,
	// 600,000 (each ID costs a few hundred bytes plus its answer).
	Dedup int

	// Logger receives rejected requests at Warn level and failed handlers
	// at Error level. Bodies and secrets are never logged. nil means
	// slog.Default().
	Logger *slog.Logger

	// OnReject, when set, is called for every request the Handler refuses
	// before any handler runs, with the 4xx or 503 status it is about to
	// answer (see the package documentation) and the reason, whose text is
	// the answer's body: a wrong signature, a bad query or body, a replay.
	// It is not called for an answered request, nor for a handler's
	// failure (500). It runs on the request's goroutine before the answer
	// is written, so it must not write to the response or read r's body,
	// which the Handler may have read. nil means none: rejections are
	// only logged.
	OnReject func(r *http.Request, status int, reason error)

	// Propagator, if set, reads the sender's trace context (the W3C
	// traceparent and tracestate headers the Dispatcher sends with a
	// Propagator) into the request's context before anything else runs,
	// so that a handler's ctx holds the sender's span context and its own
	// spans continue the IM server's trace. nil means none: the receiver
	// links no OpenTelemetry package, so it cannot reach
	// otel.GetTextMapPropagator() by itself. With OpenTelemetry, pass
	// callback.TraceExtractor{} (the global propagator) or, without
	// importing the callback package,
	//
	//	receiver.PropagatorFunc(func(ctx context.Context, h http.Header) context.Context {
	//		return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(h))
	//	})
	Propagator Propagator
}

// A Propagator reads a trace context from a request's headers into ctx
// (see Config.Propagator).
type Propagator interface {
	Extract(ctx context.Context, header http.Header) context.Context
}

// PropagatorFunc is a function that is a Propagator.
type PropagatorFunc func(ctx context.Context, header http.Header) context.Context

// Extract calls f.
func (f PropagatorFunc) Extract(ctx context.Context, header http.Header) context.Context {
	return f(ctx, header)
}

// Request is one verified callback.
type Request struct {
	// ID is the webhook-id header (svix-id when the request has no
	// webhook-* header; on OpenIM, the operationID header when it has
	// neither): the same on every attempt of one event. Empty if the
	// sender sent none (Tencent Cloud IM does not). A Before given an ID
	// with callback.WithEventID carries it with "/before" appended; its
	// After carries it as given.
	ID string
	// AppID is the app the event belongs to (AppCommand's appId, Tencent's
	// SdkAppid); 0 on OpenIM, which carries none.
	AppID int
	// Command names the event, for example command.MessageSendBefore.
	Command string
	// ClientIP and Platform describe the end user's device, when the
	// sender gives them (Tencent's ClientIP and OptPlatform).
	ClientIP string
	Platform string
	// Body is the event's JSON body, exactly as received. The handler may
	// keep it.
	Body json.RawMessage
	// Header is the HTTP request's header.
	Header http.Header
	// Query is the request URL's query: the protocol's parameters and any
	// the sender's URL carries.
	Query url.Values

	signed bool // the verified signature covers ID and Body
}

// HandlerFunc decides on one callback. For a Before command its Decision
// goes back to the IM server; for an After command any Decision is fine
// (Allow is the custom) and only success matters. A non-nil error is
// answered 500 and logged, so the sender counts the callback as failed:
// After retries it, Before applies its failure policy. ctx is the HTTP
// request's.
type HandlerFunc func(ctx context.Context, req *Request) (Decision, error)

// A Handler is an http.Handler that receives callbacks. Create it with New.
// A Handler is safe for concurrent use, Handle included.
type Handler struct {
	format   format.Receiver
	maxBody  int64
	fallback HandlerFunc
	onReject func(r *http.Request, status int, reason error) // nil: none
	log      *slog.Logger
	readFor  time.Duration    // Config.ReadTimeout; <= 0: no bound of our own
	now      func() time.Time // a test seam
	seen     *dedup           // nil: Dedup off
	prop     Propagator       // Config.Propagator; nil: none

	mu     sync.RWMutex // guards routes
	routes map[string]HandlerFunc
}

// New validates cfg and returns a Handler with no command handlers. It
// returns an error wrapping ErrInvalidConfig for a Config it cannot use,
// such as a Secret that does not parse; the error never carries the secret.
func New(cfg Config) (*Handler, error) {
	if cfg.Tolerance < 0 {
		return nil, fmt.Errorf("%w: Tolerance is negative", ErrInvalidConfig)
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("%w: MaxBodyBytes is negative", ErrInvalidConfig)
	}
	if cfg.Dedup < 0 {
		return nil, fmt.Errorf("%w: Dedup is negative", ErrInvalidConfig)
	}
	h := &Handler{
		maxBody:  cfg.MaxBodyBytes,
		readFor:  cmp.Or(cfg.ReadTimeout, defaultReadTimeout),
		fallback: cfg.Default,
		onReject: cfg.OnReject,
		prop:     cfg.Propagator,
		log:      cfg.Logger,
		now:      time.Now,
		routes:   map[string]HandlerFunc{},
	}
	if h.maxBody == 0 {
		h.maxBody = defaultMaxBodyBytes
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	var err error
	if h.format, err = cfg.Protocol.Format().Receiver(cfg.Secret, cfg.Tolerance); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Dedup > 0 {
		h.seen = newDedup(cfg.Dedup, 2*h.format.Tolerance())
	}
	return h, nil
}

// Handle registers fn for command, replacing any earlier handler of it; a
// nil fn removes it, so the command goes to Config.Default. The probe
// command format.CheckCommand is answered by the Handler itself: a
// handler registered for it is never called.
func (h *Handler) Handle(command string, fn HandlerFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fn == nil {
		delete(h.routes, command)
		return
	}
	h.routes[command] = fn
}

// rejection is a request answered with a 4xx status.
type rejection struct {
	status int
	reason string
}

func (e *rejection) Error() string { return e.reason }

func reject(status int, format string, args ...any) *rejection {
	return &rejection{status: status, reason: fmt.Sprintf(format, args...)}
}

// ServeHTTP receives one callback: it verifies it, calls the command's
// handler and writes the protocol's answer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := h.prop; p != nil {
		r = r.WithContext(p.Extract(r.Context(), r.Header))
	}
	req, rej := h.parse(w, r)
	if rej != nil {
		h.refuse(w, r, rej)
		return
	}
	if h.seen == nil || req.ID == "" {
		if answer, ok := h.handle(w, r, req); ok {
			writeAnswer(w, answer)
		}
		return
	}
	key, who := h.dedupKey(req)
	answer, e, rej := h.seen.claim(r.Context(), key, who, h.now)
	switch {
	case rej != nil:
		h.refuse(w, r, rej)
		return
	case e == nil:
		writeAnswer(w, answer)
		return
	}
	var kept []byte
	defer func() { h.seen.finish(e, kept) }() // even if the handler aborts
	if answer, ok := h.handle(w, r, req); ok {
		kept = answer
		writeAnswer(w, answer)
	}
}

// refuse logs a rejected request, tells Config.OnReject and answers it.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, rej *rejection) {
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "receiver: callback rejected",
		slog.Int("status", rej.status),
		slog.String("reason", rej.reason),
		slog.String("remote_addr", r.RemoteAddr),
	)
	if h.onReject != nil {
		h.onReject(r, rej.status, rej)
	}
	if rej.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	http.Error(w, rej.reason, rej.status)
}

// handle calls req's handler and returns the answer to write. When the
// handler fails, handle answers 500 itself and returns false.
func (h *Handler) handle(w http.ResponseWriter, r *http.Request, req *Request) ([]byte, bool) {
	var fn HandlerFunc
	if req.Command != format.CheckCommand { // the probe is allowed here, unseen by handlers
		h.mu.RLock()
		fn = h.routes[req.Command]
		h.mu.RUnlock()
		if fn == nil {
			fn = h.fallback
		}
	}
	dec := Allow()
	if fn != nil {
		var err error
		if dec, err = h.call(r.Context(), fn, req); err != nil {
			h.failed(r.Context(), req, "handler failed", err)
			http.Error(w, "callback handler failed", http.StatusInternalServerError)
			return nil, false
		}
	}
	answer, err := h.format.Encode(dec)
	if err != nil {
		h.failed(r.Context(), req, "handler's decision cannot be answered", err)
		http.Error(w, "callback handler's decision cannot be answered", http.StatusInternalServerError)
		return nil, false
	}
	return answer, true
}

// parse reads and verifies r, in the order a rejection is reported: method,
// size, signature, then the request's own fields.
func (h *Handler) parse(w http.ResponseWriter, r *http.Request) (*Request, *rejection) {
	if r.Method != http.MethodPost {
		return nil, reject(http.StatusMethodNotAllowed, "method %s not allowed: callbacks are POST", r.Method)
	}
	body, rej := readBody(w, r, h.maxBody, h.readFor)
	if rej != nil {
		return nil, rej
	}
	c, err := h.format.Read(r, body, h.now())
	if err != nil {
		return nil, rejectionOf(err)
	}
	if !utf8.Valid(body) || !json.Valid(body) {
		return nil, reject(http.StatusBadRequest, "body is not valid JSON in UTF-8")
	}
	return &Request{ID: c.EventID, AppID: c.AppID, Command: c.Command, ClientIP: c.ClientIP, Platform: c.Platform,
		Body: body, Header: r.Header, Query: r.URL.Query(), signed: c.Signed}, nil
}

// readBody reads at most limit bytes of r's body, within timeout when it is
// positive. Its buffer grows as bytes arrive: a declared Content-Length is
// only trusted to refuse a body that is too large.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, *rejection) {
	if r.ContentLength > limit {
		return nil, reject(http.StatusRequestEntityTooLarge, "body over %d bytes", limit)
	}
	var err error
	if timeout > 0 {
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(timeout)) == nil {
			// Clear it once the body is read, so that the server's check
			// that the peer is still there while the handler runs, and its
			// read of the next request, do not hit it. After a timeout it
			// stays: the connection is closed, unread.
			defer func() {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					_ = rc.SetReadDeadline(time.Time{})
				}
			}()
		}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, bodyPrealloc)))
	}
	_, err = buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, reject(http.StatusRequestEntityTooLarge, "body over %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Do not let the server wait for the rest to keep the connection.
		w.Header().Set("Connection", "close")
		return nil, reject(http.StatusRequestTimeout, "body not received within %v", timeout)
	case err != nil:
		return nil, reject(http.StatusBadRequest, "reading body: %v", err)
	}
	return buf.Bytes(), nil
}

// rejectionOf returns the rejection of a request the format's Read
// refused: its *format.RequestError's status, or 400.
func rejectionOf(err error) *rejection {
	var re *format.RequestError
	if errors.As(err, &re) && re.Status >= 400 && re.Status < 500 {
		return &rejection{status: re.Status, reason: re.Reason}
	}
	return &rejection{status: http.StatusBadRequest, reason: err.Error()}
}

// call runs fn, turning a panic into an error that carries its stack.
func (h *Handler) call(ctx context.Context, fn HandlerFunc, req *Request) (dec Decision, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return fn(ctx, req)
}

func (h *Handler) failed(ctx context.Context, req *Request, msg string, err error) {
	h.log.LogAttrs(ctx, slog.LevelError, "receiver: "+msg,
		slog.Int("app_id", req.AppID),
		slog.String("command", req.Command),
		slog.String("webhook_id", req.ID),
		slog.String("error", err.Error()),
	)
}

// dedupKey returns the key under which Config.Dedup remembers req and who
// req is. A verified Standard Webhooks signature covers the webhook-id and
// the body but not the query, so there the ID alone is the key and who is
// the command and app: the same ID under another command or app is a
// replay. Otherwise (Tencent's Sign covers neither, or no Secret) the key
// adds the command, the app and a digest of the body, so that a request
// reusing an ID with other content is another request, not a replay.
func (h *Handler) dedupKey(req *Request) (key, who string) {
	who = req.Command + "\x00" + strconv.Itoa(req.AppID)
	if req.signed {
		return req.ID, who
	}
	sum := sha256.Sum256(req.Body)
	return req.ID + "\x00" + who + "\x00" + string(sum[:]), ""
}

func writeAnswer(w http.ResponseWriter, answer []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(answer)
}

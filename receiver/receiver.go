// Package receiver is the App backend's side of imcallback: an http.Handler
// that receives the callbacks an IM server sends with package callback (or
// Tencent Cloud IM's), verifies their signatures and timestamps, routes them
// by command to handler functions and writes the protocol's answer from what
// each handler decides.
//
//	h, err := receiver.New(receiver.Config{Secret: os.Getenv("CALLBACK_SECRET")})
//	if err != nil {
//		log.Fatal(err)
//	}
//	h.Handle(callback.MessageSendBefore, func(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
//		if bytes.Contains(req.Body, []byte("spam")) {
//			return receiver.Deny(403, "no spam"), nil
//		}
//		return receiver.Allow(), nil
//	})
//	log.Fatal(http.ListenAndServe(":8989", h))
//
// Requests it rejects get a plain-text body saying why and the status: 405
// for a method other than POST, 413 for a body over Config.MaxBodyBytes, 401
// for a missing or wrong signature or a timestamp outside the tolerance, 400
// for a missing command or app ID or a body that is not JSON. A handler's
// error, or a panic, is answered 500, so the sender counts the callback as
// failed (Before applies its failure policy, After retries).
package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/imcallback/callback"
)

// ErrInvalidConfig is wrapped by New's error for a Config it rejects.
var ErrInvalidConfig = errors.New("receiver: invalid config")

// Defaults applied by New to the zero values of Config.
const (
	defaultSeedTolerance    = 5 * time.Minute
	defaultTencentTolerance = time.Minute
	defaultMaxBodyBytes     = 1 << 20
)

// Config configures a Handler. The zero value of every field means the
// documented default; the zero Config receives unsigned Seed callbacks.
type Config struct {
	// Protocol is the wire format the IM server sends: callback.Seed (the
	// zero value) or callback.Tencent.
	Protocol callback.Protocol

	// Secret verifies the callbacks; it must match the sender's
	// callback.Config.Secret. Empty means no verification: any request is
	// accepted, so only leave it empty on a trusted network.
	//
	// For Seed, one or more Standard Webhooks secrets ("whsec_" + base64 of
	// a 24 to 64 byte key) separated by spaces; a request is genuine if one
	// of its signatures matches one of them. For Tencent, one or more
	// tokens separated by spaces; a request is genuine if its Sign matches
	// one of them. List the new secret next to the old one while keys
	// rotate.
	Secret string

	// Tolerance is how far a request's timestamp (Seed's webhook-timestamp,
	// Tencent's RequestTime) may be from this server's clock, either way.
	// 0 means 5 minutes for Seed and 1 minute for Tencent. Unused without
	// a Secret.
	Tolerance time.Duration

	// MaxBodyBytes caps the request body; a larger one is answered 413.
	// 0 means 1 MiB.
	MaxBodyBytes int64

	// Default handles commands that have no handler. nil means allow them.
	Default HandlerFunc

	// Dedup is how many recent webhook-ids the Handler remembers, with the
	// answer it gave. A request that repeats one (an After retry whose
	// answer was lost, a replay) gets the same answer without calling its
	// handler again. With Seed and a Secret, the signed webhook-id alone
	// identifies a request; otherwise a repeat must also have the same
	// command and body. The memory is bounded: the
	// least recently used IDs are forgotten first. Only answers of
	// handlers that succeeded are remembered; duplicates that arrive while
	// the first is still being handled are handled again. 0 means off.
	Dedup int

	// Logger receives rejected requests at Warn level and failed handlers
	// at Error level. Bodies and secrets are never logged. nil means
	// slog.Default().
	Logger *slog.Logger
}

// Request is one verified callback.
type Request struct {
	// ID is the webhook-id header: the same on every attempt of one event.
	// Empty if the sender sent none (Tencent Cloud IM does not).
	ID string
	// AppID is the app the event belongs to (Seed's appId, Tencent's
	// SdkAppid).
	AppID int
	// Command names the event, for example callback.MessageSendBefore.
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
	proto    callback.Protocol
	maxBody  int64
	fallback HandlerFunc
	log      *slog.Logger
	verify   verifier
	now      func() time.Time // a test seam
	seen     *lru.Cache[string, []byte]

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
		proto:    cfg.Protocol,
		maxBody:  cfg.MaxBodyBytes,
		fallback: cfg.Default,
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
	switch cfg.Protocol {
	case callback.Seed:
		h.verify, err = newSeedVerifier(cfg.Secret, orDefault(cfg.Tolerance, defaultSeedTolerance))
	case callback.Tencent:
		h.verify, err = newTencentVerifier(cfg.Secret, orDefault(cfg.Tolerance, defaultTencentTolerance))
	default:
		err = fmt.Errorf("%w: unknown Protocol %d", ErrInvalidConfig, int(cfg.Protocol))
	}
	if err != nil {
		return nil, err
	}
	if cfg.Dedup > 0 {
		h.seen, err = lru.New[string, []byte](cfg.Dedup)
		if err != nil {
			return nil, fmt.Errorf("%w: Dedup: %v", ErrInvalidConfig, err)
		}
	}
	return h, nil
}

// Handle registers fn for command, replacing any earlier handler of it; a
// nil fn removes it, so the command goes to Config.Default.
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
	req, rej := h.parse(w, r)
	if rej != nil {
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "receiver: callback rejected",
			slog.Int("status", rej.status),
			slog.String("reason", rej.reason),
			slog.String("remote_addr", r.RemoteAddr),
		)
		if rej.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodPost)
		}
		http.Error(w, rej.reason, rej.status)
		return
	}

	var key string
	if h.seen != nil && req.ID != "" {
		key = h.dedupKey(req)
		if answer, ok := h.seen.Get(key); ok {
			writeAnswer(w, answer)
			return
		}
	}

	h.mu.RLock()
	fn := h.routes[req.Command]
	h.mu.RUnlock()
	if fn == nil {
		fn = h.fallback
	}
	dec := Allow()
	if fn != nil {
		var err error
		if dec, err = h.call(r.Context(), fn, req); err != nil {
			h.failed(r.Context(), req, "handler failed", err)
			http.Error(w, "callback handler failed", http.StatusInternalServerError)
			return
		}
	}
	answer, err := dec.encode(h.proto)
	if err != nil {
		h.failed(r.Context(), req, "handler's decision cannot be answered", err)
		http.Error(w, "callback handler's decision cannot be answered", http.StatusInternalServerError)
		return
	}
	if key != "" {
		h.seen.Add(key, answer)
	}
	writeAnswer(w, answer)
}

// parse reads and verifies r, in the order a rejection is reported: method,
// size, signature, then the request's own fields.
func (h *Handler) parse(w http.ResponseWriter, r *http.Request) (*Request, *rejection) {
	if r.Method != http.MethodPost {
		return nil, reject(http.StatusMethodNotAllowed, "method %s not allowed: callbacks are POST", r.Method)
	}
	body, rej := readBody(w, r, h.maxBody)
	if rej != nil {
		return nil, rej
	}
	q := r.URL.Query()
	if rej := h.verify.verify(r.Header, q, body, h.now()); rej != nil {
		return nil, rej
	}
	req, rej := h.verify.request(q)
	if rej != nil {
		return nil, rej
	}
	if !json.Valid(body) {
		return nil, reject(http.StatusBadRequest, "body is not valid JSON")
	}
	req.ID = r.Header.Get("Webhook-Id")
	req.Body = body
	req.Header = r.Header
	return req, nil
}

// readBody reads at most limit bytes of r's body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *rejection) {
	if r.ContentLength > limit {
		return nil, reject(http.StatusRequestEntityTooLarge, "body over %d bytes", limit)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, reject(http.StatusRequestEntityTooLarge, "body over %d bytes", limit)
	case err != nil:
		return nil, reject(http.StatusBadRequest, "reading body: %v", err)
	}
	return buf.Bytes(), nil
}

// parseAppID reads an app ID parameter.
func parseAppID(name, v string) (int, *rejection) {
	if v == "" {
		return 0, reject(http.StatusBadRequest, "missing %s", name)
	}
	id, err := strconv.Atoi(v)
	if err != nil {
		return 0, reject(http.StatusBadRequest, "%s is not an integer", name)
	}
	return id, nil
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

// dedupKey identifies a request for Config.Dedup. A verified Standard
// Webhooks signature covers the webhook-id and the body but not the query,
// so there the ID alone is the key: a signed request replayed under another
// command or app gets the first answer and reaches no handler. Otherwise
// (Tencent's Sign covers neither, or no Secret) the key adds the command
// and a digest of the body, so that a request reusing an ID with other
// content is not taken for a duplicate.
func (h *Handler) dedupKey(req *Request) string {
	if h.verify.signsID() {
		return req.ID
	}
	sum := sha256.Sum256(req.Body)
	return req.ID + "\x00" + req.Command + "\x00" + string(sum[:])
}

func writeAnswer(w http.ResponseWriter, answer []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(answer)
}

func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

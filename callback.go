// Package callback calls an App backend over HTTP before and after
// instant-messaging events, for an IM server that embeds it.
//
// Before runs inline on the IM server's hot path: it asks the App backend
// whether an event (a message send, a friend request, a member add) may
// proceed, and returns the App's decision: allow, deny, drop silently or
// allow with rewritten data. It is bounded by a timeout (2 s by default) and
// fails open: if the App backend is slow, down or answers nonsense, the event
// proceeds and the failure is logged, unless the command is set to fail
// closed.
//
// After reports an event that has happened. It returns at once; a bounded
// queue and a pool of workers deliver the event with retries, and an event
// that cannot be delivered goes to a dead-letter hook and the error log, so
// none disappears without a trace. Close drains the queue.
//
// The wire protocol is the seed design's: POST {URL}?appId=..&command=.. with
// the event's JSON body, answered by {"code": 200, "msg": "...", "data": ...}.
package callback

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-retryablehttp"
)

// Errors returned by the Dispatcher, or wrapped in Response.Err and in the
// error given to a DeadLetterFunc. Compare with errors.Is.
var (
	// ErrInvalidConfig is wrapped by New's error for a Config it rejects.
	ErrInvalidConfig = errors.New("callback: invalid config")
	// ErrClosed is returned by After, and set in Before's Response, once
	// Close has been called; it also ends deliveries that Close cut short.
	ErrClosed = errors.New("callback: dispatcher closed")
	// ErrQueueFull is returned by After when the delivery queue is full.
	ErrQueueFull = errors.New("callback: after queue full")
	// ErrInvalidBody means the event body given to Before or After is not
	// valid JSON; nothing was sent.
	ErrInvalidBody = errors.New("callback: body is not valid JSON")
	// ErrInvalidCommand means the command given to Before or After is empty.
	ErrInvalidCommand = errors.New("callback: empty command")
	// ErrStatus means the App backend answered with a status other than 2xx.
	ErrStatus = errors.New("callback: App backend answered a non-2xx status")
	// ErrRedirect means the App backend answered with a redirect, which is
	// never followed.
	ErrRedirect = errors.New("callback: App backend answered a redirect")
	// ErrBadAnswer means a 2xx answer could not be read as the protocol's
	// answer: not JSON, or without its code.
	ErrBadAnswer = errors.New("callback: App backend's answer is not valid")
	// ErrAnswerTooLarge means the answer was larger than
	// Config.MaxResponseBytes.
	ErrAnswerTooLarge = errors.New("callback: App backend's answer is too large")
)

// userAgent names the library on every request.
const userAgent = "imcallback/1 (+https://github.com/imcallback/callback)"

// A Dispatcher sends Before and After callbacks to one App backend. Create it
// with New and release it with Close. A Dispatcher is safe for concurrent use.
type Dispatcher struct {
	s      settings
	log    *slog.Logger
	wire   wire
	target target

	endpoints *endpoints // breaker and After limits of each callback URL
	answers   answerMemo // the last plain allow answer, decoded

	transport *http.Transport // owned: idle connections closed by Close
	client    *http.Client    // Before: one attempt, no redirects
	retry     *retryablehttp.Client

	idPrefix string        // random per Dispatcher, so IDs never repeat across processes
	seq      atomic.Uint64 // numbers events for their IDs

	// mu guards closed against After's send racing Close's close(queue).
	mu     sync.RWMutex
	closed bool
	queue  chan *event

	isClosed  atomic.Bool // read by Before without taking mu
	life      context.Context
	abort     context.CancelFunc // cancels in-flight deliveries at Close's deadline
	live      atomic.Int32       // workers still running
	drained   chan struct{}      // closed when the last worker ends
	closeOnce sync.Once
}

// New validates cfg, applies its defaults and starts the After workers.
// It returns an error wrapping ErrInvalidConfig for a Config it cannot use;
// nothing is started then.
func New(cfg Config) (*Dispatcher, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	w := seedWire{}
	d := &Dispatcher{
		s:        s,
		log:      s.Logger,
		wire:     w,
		target:   newTarget(s.endpoint, w.reserved()...),
		idPrefix: newIDPrefix(),
		queue:    make(chan *event, s.QueueSize),
		drained:  make(chan struct{}),
	}
	d.transport = newTransport(&s)
	d.endpoints = newEndpoints(&d.s)
	d.client = newClient(d.transport, d.endpoints)
	d.retry = newRetryClient(&s, d.client)
	// The lifetime context belongs to the Dispatcher: deliveries outlive the
	// After call that queued them, and end only by success, dead letter or
	// Close.
	d.life, d.abort = context.WithCancel(context.Background())

	d.live.Store(int32(s.Workers))
	for range s.Workers {
		go d.work()
	}
	return d, nil
}

// Close stops accepting After events, delivers every event already queued
// or waiting for a retry, and returns nil when all are done. If ctx ends
// first, Close cancels the deliveries in flight, hands every undelivered
// event to the dead-letter hook (with an error wrapping ErrClosed) and
// returns ctx's error. Either way, when Close returns every goroutine the
// Dispatcher started has ended and its idle connections are closed. Calling
// Close again is safe; it waits for the same drain.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.isClosed.Store(true)
		close(d.queue)
		d.mu.Unlock()
	})
	var err error
	select {
	case <-d.drained:
	case <-ctx.Done():
		err = ctx.Err()
		d.abort()
		<-d.drained // every remaining delivery now fails at once
	}
	d.abort()
	d.transport.CloseIdleConnections()
	return err
}

// event is one After event in the queue.
type event struct {
	appID   int
	command string
	body    []byte
	seq     uint64
}

// Event is an After event handed to a DeadLetterFunc.
type Event struct {
	ID       string // the webhook-id it was sent with
	AppID    int
	Command  string
	Body     []byte // the JSON body, as given to After
	Attempts int    // requests made; 0 if it never reached the network
}

// newIDPrefix returns a random prefix for event IDs.
func newIDPrefix() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "msg_" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]) + "_"
}

// eventID returns the webhook-id of the event numbered seq: unique per
// event, the same on each of its attempts.
func (d *Dispatcher) eventID(seq uint64) string {
	return d.idPrefix + strconv.FormatUint(seq, 36)
}

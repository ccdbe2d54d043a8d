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
// The default wire protocol is the seed design's: POST
// {URL}?appId=..&command=.. with the event's JSON body, answered by
// {"code": 200, "msg": "...", "data": ...}. Config.Protocol selects
// Tencent Cloud IM's format instead, and Config.Secret signs every request
// (Standard Webhooks signatures for AppCommand, Tencent's Sign for Tencent).
package callback

import (
	"context"
	"crypto/cipher"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// userAgent names the library on every request.
const userAgent = "imcallback/1 (+https://github.com/imcallback/callback)"

// A Dispatcher sends Before and After callbacks to one App backend, or to
// each app's own with Config.Resolver. Create it with New and release it
// with Close. A Dispatcher is safe for concurrent use.
type Dispatcher struct {
	s      settings
	log    *slog.Logger
	static *route           // Config.URL's; nil with a Resolver
	routes *routes          // each app's, with a Resolver; nil without
	now    func() time.Time // the clock that stamps signatures; a test seam

	urls *urlStates // breaker and After limits of each callback URL

	transport *http.Transport // owned: idle connections closed by Close; requests go through do

	beforeInFlight atomic.Int64 // Before requests in flight: see before's connection trace

	ids cipher.Block  // AES-256 under a random key per Dispatcher: eventID
	seq atomic.Uint64 // numbers events; eventID makes their IDs from it

	queue    Queue
	mem      *memQueue       // the queue when it is the memory one; nil with Config.Queue
	stopping context.Context // ends when Close starts
	stop     context.CancelFunc

	isClosed  atomic.Bool // read by Before
	life      context.Context
	abort     context.CancelFunc // cancels in-flight deliveries at Close's deadline
	live      atomic.Int32       // workers still running
	drained   chan struct{}      // closed when the last worker ends
	closeOnce sync.Once

	releaseOnce sync.Once // closes the queue and the observers after the last worker
	releaseErr  error

	obs       *observer // metrics and Stats
	beforeLog *floodLog // failures of Before, flood-controlled
	afterLog  *floodLog // dead letters, flood-controlled

	attempts *attemptLog   // recent calls and attempts; nil when Config.AttemptLog is negative
	probed   chan struct{} // closed when probeDisabled ends; nil without Health.Probe

	trace tracing // spans and trace context: trace.go
}

// New validates cfg, applies its defaults and starts the After workers.
// It returns an error wrapping ErrInvalidConfig for a Config it cannot use;
// nothing is started then.
func New(cfg Config) (*Dispatcher, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		s:       s,
		log:     s.Logger,
		now:     time.Now,
		ids:     newIDCipher(),
		queue:   s.Queue,
		drained: make(chan struct{}),
	}
	if s.Resolver != nil {
		d.routes = newRoutes(&d.s)
	} else if d.static, err = newRoute(&d.s, &Endpoint{URL: s.URL, Protocol: s.Protocol, Secret: s.Secret}); err != nil {
		return nil, err
	}
	d.transport = newTransport(&s)
	d.urls = newURLStates(&d.s)
	d.urls.inUse = d.urlsInUse
	if d.queue == nil {
		d.mem = newMemQueue(s.QueueSize, s.EndpointQueueSize, s.Workers, d.urls)
		d.queue = d.mem
	}
	// The lifetime context belongs to the Dispatcher: deliveries outlive the
	// After call that queued them, and end only by success, dead letter or
	// Close.
	d.life, d.abort = context.WithCancel(context.Background())
	d.stopping, d.stop = context.WithCancel(d.life)

	d.observe()
	d.trace = newTracing(&d.s)
	d.attempts = newAttemptLog(&d.s)

	d.live.Store(int32(s.Workers))
	for range s.Workers {
		go d.work()
	}
	if s.Health.Probe > 0 {
		d.probed = make(chan struct{})
		go d.probeDisabled()
	}
	return d, nil
}

// Close stops accepting After events, delivers every event already queued
// or waiting for a retry, and returns nil when all are done. If ctx ends
// first, Close cancels the deliveries in flight, hands every undelivered
// event to the dead-letter hook (with an error wrapping ErrClosed) and
// returns ctx's error. A ctx without a deadline is bounded by
// Config.DrainTimeout (30 s by default): past it, Close gives up the same
// way and returns an error wrapping context.DeadlineExceeded. Either way,
// when Close returns every goroutine the Dispatcher started has ended and
// its idle connections are closed. Calling Close again is safe; it waits
// for the same drain.
//
// With Config.Queue set, Close finishes the attempts in flight and settles
// them; events not yet handed out stay in the Queue for another node or
// the next start, and an attempt cut short by ctx is handed back to the
// Queue (Delivery.Retry with no wait) rather than dead-lettered. Close then
// closes the Queue.
func (d *Dispatcher) Close(ctx context.Context) error {
	begin := time.Now()
	d.closeOnce.Do(func() {
		d.isClosed.Store(true)
		d.stop()
		d.queue.Stop()
	})
	var err error
	var limit <-chan time.Time
	if _, ok := ctx.Deadline(); !ok && d.s.DrainTimeout > 0 {
		t := time.NewTimer(d.s.DrainTimeout)
		defer t.Stop()
		limit = t.C
	}
	select {
	case <-d.drained:
	case <-ctx.Done():
		err = ctx.Err()
	case <-limit:
		err = fmt.Errorf("callback: Close: drain limit of %v passed: %w", d.s.DrainTimeout, context.DeadlineExceeded)
	}
	if err != nil {
		d.abort()
		<-d.drained // every remaining delivery now fails at once
	}
	d.abort()
	if d.probed != nil {
		<-d.probed // its probe ended with d.stopping
	}
	d.transport.CloseIdleConnections()
	if herr := d.urls.health.close(ctx, begin, d.s.DrainTimeout); err == nil {
		err = herr
	}
	d.releaseOnce.Do(func() {
		d.closeObservers(ctx)
		d.releaseErr = d.queue.Close()
	})
	if err == nil {
		err = d.releaseErr
	}
	return err
}

// Event is an After event: stored in a Queue, and handed to a
// DeadLetterFunc.
type Event struct {
	ID      string // the webhook-id it is sent with, the same on every attempt
	AppID   int
	Command string
	Body    []byte // the JSON body, as given to After
	// Attempts is, for a DeadLetterFunc, the requests made (with a Queue
	// set in Config: the hand-outs, a crashed node's included, but not
	// those postponed through a Postponer); 0 if it never reached the
	// network. For Queue.Get, the earlier hand-outs, likewise.
	Attempts int
	// ClientIP and Platform are what WithClient put in After's context,
	// for protocols that send them (Tencent's ClientIP and OptPlatform);
	// empty otherwise. A Queue must store them with the event.
	ClientIP string
	Platform string
	// Queued is when After accepted the event. A Queue should store it;
	// the zero time is allowed.
	Queued time.Time
	// OrderKey is the key WithOrderKey gave After; "" for none. A Queue
	// must store it and hand out the events of one app under one key one
	// at a time, in the order it stored them: the next only once the one
	// before is acked or dead-lettered (natsqueue does; see WithOrderKey).
	OrderKey string

	// Trace is the trace context of After's caller, as Config.Propagator
	// wrote it (with propagation.TraceContext: traceparent and
	// tracestate); nil when After's ctx held no span. Each delivery
	// attempt is a span in that trace. A Queue should store it with the
	// event (natsqueue keeps it in the message's headers), so that the
	// node that delivers the event continues the trace.
	Trace map[string]string

	seq   uint64 // numbers the event; the memory queue's ID is made from it
	route *route // the app's endpoint as After resolved it; nil after a durable Queue

	traceID trace.TraceID // of Trace, for the attempt log: set by After and by each attempt
}

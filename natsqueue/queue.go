// Package natsqueue keeps After events of a callback.Dispatcher in NATS
// JetStream, so that they survive a restart or a crash of the IM server and
// are delivered by whichever of its nodes is free.
//
// Events go into a stream with work-queue retention and file storage. Every
// node reads them through one durable pull consumer, so each event is handed
// to one node at a time; a node that crashes mid-delivery leaves its events
// unacknowledged and the server hands them to another node after AckWait.
// Delivery is at least once: App backends deduplicate by the webhook-id
// header, which is stored with the event and is the same on every attempt
// from every node.
//
// New uses a connection the caller owns (a NATS cluster in production);
// Embedded starts an in-process server storing in a directory, for
// single-node durability with no other service:
//
//	q, err := natsqueue.Embedded(ctx, "/var/lib/im/callback", natsqueue.Options{})
//	d, err := callback.New(callback.Config{URL: url, Queue: q})
//
// The Dispatcher owns the Queue: its Close closes it.
package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcallback/callback"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors returned by this package. Compare with errors.Is.
var (
	// ErrInvalidOptions is wrapped by New's error for Options it rejects.
	ErrInvalidOptions = errors.New("natsqueue: invalid options")
	// ErrStreamMismatch means an existing stream of the configured name
	// cannot hold the queue: not a work queue, or not on its subjects.
	ErrStreamMismatch = errors.New("natsqueue: existing stream does not fit")
	// ErrPublish is wrapped by Put's error when JetStream did not
	// acknowledge an event: the event may not be stored.
	ErrPublish = errors.New("natsqueue: event not stored")
	// ErrMalformed means a message in the stream is not an event this
	// package wrote.
	ErrMalformed = errors.New("natsqueue: malformed event message")
)

// Defaults applied to the zero values of Options.
const (
	defaultStream            = "CALLBACK_AFTER"
	defaultSubject           = "callback.after"
	defaultDeadLetterStream  = "CALLBACK_DEAD"
	defaultDeadLetterSubject = "callback.dead"
	defaultConsumer          = "callback"
	defaultReplicas          = 1
	defaultAckWait           = 30 * time.Second
	defaultPrefetch          = 64
	defaultPublishTimeout    = 5 * time.Second
)

// pollWait bounds one wait of Get for the next event.
const pollWait = 500 * time.Millisecond

// Headers of an event message; its data is the event's body.
const (
	hdrID       = "Callback-Id" // the webhook-id
	hdrAppID    = "Callback-App-Id"
	hdrCommand  = "Callback-Command"
	hdrClientIP = "Callback-Client-Ip" // the caller's client, for Tencent's query; optional
	hdrPlatform = "Callback-Platform"  // likewise
	hdrQueued   = "Callback-Queued"    // when After accepted it, RFC 3339 with nanoseconds; optional
	hdrAttempts = "Callback-Attempts"  // dead letters: hand-outs made
	hdrError    = "Callback-Error"     // dead letters: why
	hdrSeq      = "Callback-Seq"       // dead letters: sequence in the work stream
)

// Options configures a Queue. The zero value of every field means the
// documented default. Every node of an IM server must use the same names.
type Options struct {
	// Stream is the work-queue stream of pending events. "" means
	// CALLBACK_AFTER. It is created with file storage if it does not
	// exist; an existing one is used as it is once checked to be a work
	// queue on Subject (change it with the nats CLI).
	Stream string
	// Subject is the prefix of the stream's subjects: an event of App
	// appID is published on Subject.appID. "" means callback.after.
	Subject string
	// Replicas is the number of servers holding each stream (1, 3 or 5 in
	// a cluster). 0 means 1.
	Replicas int
	// MaxAge drops a pending event this old even if undelivered. 0 means
	// never: an event waits until it is delivered or dead-lettered.
	MaxAge time.Duration

	// DeadLetterStream keeps events that were not delivered, with
	// file storage, until Replay or MaxAge. "" means CALLBACK_DEAD, on
	// subjects DeadLetterSubject.appID ("" means callback.dead).
	DeadLetterStream  string
	DeadLetterSubject string
	// DeadLetterMaxAge drops dead letters this old. 0 means never.
	DeadLetterMaxAge time.Duration

	// Consumer is the durable consumer shared by every node. "" means
	// callback.
	Consumer string
	// AckWait is how long the server waits for a node to settle an event
	// before it hands it to another node. A node working on an event
	// keeps it with in-progress acks every third of AckWait, so AckWait
	// only bounds how long a crashed node holds its events. 0 means 30 s.
	AckWait time.Duration
	// MaxAckPending caps the events handed out and not yet settled,
	// including those waiting for a retry, across all nodes. When it is
	// reached the server hands out nothing more until some are settled.
	// 0 means no cap.
	MaxAckPending int
	// Prefetch is how many events a node pulls ahead of its workers.
	// 0 means 64.
	Prefetch int

	// PublishTimeout bounds how long Put waits for JetStream to
	// acknowledge an event, within Put's ctx. 0 means 5 s.
	PublishTimeout time.Duration

	// Logger receives messages the queue skips (malformed ones) at Error
	// level. nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	for name, d := range map[string]time.Duration{
		"MaxAge": o.MaxAge, "DeadLetterMaxAge": o.DeadLetterMaxAge,
		"AckWait": o.AckWait, "PublishTimeout": o.PublishTimeout,
	} {
		if d < 0 {
			return o, fmt.Errorf("%w: %s is negative", ErrInvalidOptions, name)
		}
	}
	for name, n := range map[string]int{"Replicas": o.Replicas, "MaxAckPending": o.MaxAckPending, "Prefetch": o.Prefetch} {
		if n < 0 {
			return o, fmt.Errorf("%w: %s is negative", ErrInvalidOptions, name)
		}
	}
	o.Stream = or(o.Stream, defaultStream)
	o.Subject = or(o.Subject, defaultSubject)
	o.DeadLetterStream = or(o.DeadLetterStream, defaultDeadLetterStream)
	o.DeadLetterSubject = or(o.DeadLetterSubject, defaultDeadLetterSubject)
	o.Consumer = or(o.Consumer, defaultConsumer)
	o.Replicas = or(o.Replicas, defaultReplicas)
	o.AckWait = or(o.AckWait, defaultAckWait)
	o.Prefetch = or(o.Prefetch, defaultPrefetch)
	o.PublishTimeout = or(o.PublishTimeout, defaultPublishTimeout)
	if o.MaxAckPending == 0 {
		o.MaxAckPending = -1 // JetStream's "no limit"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Stream == o.DeadLetterStream || o.Subject == o.DeadLetterSubject {
		return o, fmt.Errorf("%w: the dead-letter stream and subject must differ from the queue's", ErrInvalidOptions)
	}
	return o, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Queue is a callback.Queue on a JetStream stream. Create it with New or
// Embedded and give it to callback.Config.Queue; the Dispatcher's Close
// closes it. A Queue is safe for concurrent use.
type Queue struct {
	o    Options
	nc   *nats.Conn
	js   jetstream.JetStream
	work jetstream.Stream
	dead jetstream.Stream

	stopped atomic.Bool

	// mu guards it, which Get replaces when the iterator ended while the
	// queue runs (a deleted consumer, a closed subscription).
	mu sync.Mutex
	it jetstream.MessagesContext

	release   func() // Embedded: closes the connection and the server
	closeOnce sync.Once
	closeErr  error
}

var _ callback.Queue = (*Queue)(nil)

// New returns a Queue on the JetStream of nc, creating or checking its
// streams and its durable consumer. The caller keeps owning nc: Close does
// not close it. ctx bounds the set-up.
func New(ctx context.Context, nc *nats.Conn, o Options) (*Queue, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: no connection", ErrInvalidOptions)
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsqueue: %w", err)
	}
	q := &Queue{o: o, nc: nc, js: js}
	q.work, err = q.stream(ctx, jetstream.StreamConfig{
		Name:      o.Stream,
		Subjects:  []string{o.Subject + ".>"},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
		Replicas:  o.Replicas,
		MaxAge:    o.MaxAge,
	})
	if err != nil {
		return nil, err
	}
	q.dead, err = q.stream(ctx, jetstream.StreamConfig{
		Name:      o.DeadLetterStream,
		Subjects:  []string{o.DeadLetterSubject + ".>"},
		Retention: jetstream.LimitsPolicy,
		Storage:   jetstream.FileStorage,
		Replicas:  o.Replicas,
		MaxAge:    o.DeadLetterMaxAge,
	})
	if err != nil {
		return nil, err
	}
	if q.it, err = q.consume(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

// stream returns the stream of cfg, created if missing and checked if not.
func (q *Queue) stream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := q.js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = q.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = q.js.Stream(ctx, cfg.Name) // another node made it first
		}
	}
	if err != nil {
		return nil, fmt.Errorf("natsqueue: stream %s: %w", cfg.Name, err)
	}
	got := s.CachedInfo().Config
	if got.Retention != cfg.Retention {
		return nil, fmt.Errorf("%w: stream %s has retention %v, want %v", ErrStreamMismatch, cfg.Name, got.Retention, cfg.Retention)
	}
	for _, subj := range got.Subjects {
		if subj == cfg.Subjects[0] {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: stream %s has subjects %q, want %q among them", ErrStreamMismatch, cfg.Name, got.Subjects, cfg.Subjects[0])
}

// consume creates or updates the shared durable consumer and starts
// pulling from it.
func (q *Queue) consume(ctx context.Context) (jetstream.MessagesContext, error) {
	c, err := q.work.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       q.o.Consumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.o.AckWait,
		MaxDeliver:    -1, // the Dispatcher decides when to give up
		MaxAckPending: q.o.MaxAckPending,
		FilterSubject: q.o.Subject + ".>",
	})
	if err != nil {
		return nil, fmt.Errorf("natsqueue: consumer %s: %w", q.o.Consumer, err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(q.o.Prefetch))
	if err != nil {
		return nil, fmt.Errorf("natsqueue: consumer %s: %w", q.o.Consumer, err)
	}
	return it, nil
}

// Put publishes ev and returns nil once JetStream has stored it. The
// webhook-id is the message's Nats-Msg-Id, so a publish retried within the
// stream's duplicate window (2 min by default) is stored once.
func (q *Queue) Put(ctx context.Context, ev callback.Event) error {
	if q.stopped.Load() {
		return callback.ErrClosed
	}
	m := eventMsg(q.o.Subject, ev)
	ctx, cancel := context.WithTimeout(ctx, q.o.PublishTimeout)
	defer cancel()
	if _, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(q.o.Stream)); err != nil {
		return fmt.Errorf("%w: %w", ErrPublish, err)
	}
	return nil
}

// eventMsg returns the message of ev on subject prefix.appID.
func eventMsg(prefix string, ev callback.Event) *nats.Msg {
	app := strconv.Itoa(ev.AppID)
	m := nats.NewMsg(prefix + "." + app)
	m.Header[hdrID] = []string{ev.ID}
	m.Header[hdrAppID] = []string{app}
	m.Header[hdrCommand] = []string{ev.Command}
	if ev.ClientIP != "" {
		m.Header[hdrClientIP] = []string{ev.ClientIP}
	}
	if ev.Platform != "" {
		m.Header[hdrPlatform] = []string{ev.Platform}
	}
	if !ev.Queued.IsZero() {
		m.Header[hdrQueued] = []string{ev.Queued.UTC().Format(time.RFC3339Nano)}
	}
	m.Data = ev.Body
	return m
}

// decodeEvent reads an event message written by eventMsg.
func decodeEvent(h nats.Header, data []byte) (callback.Event, error) {
	ev := callback.Event{ID: h.Get(hdrID), Command: h.Get(hdrCommand), Body: data,
		ClientIP: h.Get(hdrClientIP), Platform: h.Get(hdrPlatform)}
	app, err := strconv.Atoi(h.Get(hdrAppID))
	if err != nil || ev.ID == "" || ev.Command == "" {
		return ev, ErrMalformed
	}
	ev.AppID = app
	if q := h.Get(hdrQueued); q != "" {
		if ev.Queued, err = time.Parse(time.RFC3339Nano, q); err != nil {
			return ev, ErrMalformed
		}
	}
	return ev, nil
}

// Get hands out the next event; ctx bounds the wait. After Stop it hands
// back (naks) what the node had pulled ahead, so that other nodes get it
// at once, and returns callback.ErrClosed.
func (q *Queue) Get(ctx context.Context) (callback.Delivery, error) {
	for {
		q.mu.Lock()
		it := q.it
		q.mu.Unlock()
		// Wait in short rounds so that Stop ends Get soon even when the
		// server is unreachable and the iterator cannot close.
		wait, cancel := context.WithTimeout(ctx, pollWait)
		msg, err := it.Next(jetstream.NextContext(wait))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if q.stopped.Load() {
				return nil, callback.ErrClosed
			}
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && !q.nc.IsClosed() {
				q.restart(ctx, it)
			}
			return nil, fmt.Errorf("natsqueue: %w", err)
		}
		if q.stopped.Load() {
			_ = msg.Nak()
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			q.skip(msg, err)
			continue
		}
		ev, err := decodeEvent(msg.Headers(), msg.Data())
		if err != nil {
			q.skip(msg, err)
			continue
		}
		ev.Attempts = int(meta.NumDelivered) - 1
		return q.deliver(msg, ev, meta.Sequence.Stream), nil
	}
}

// skip logs and terminates a message that is not an event.
func (q *Queue) skip(msg jetstream.Msg, err error) {
	q.o.Logger.Error("natsqueue: message skipped", slog.String("subject", msg.Subject()), slog.String("error", err.Error()))
	_ = msg.TermWithReason(ErrMalformed.Error())
}

// restart replaces an iterator that ended while the queue runs.
func (q *Queue) restart(ctx context.Context, old jetstream.MessagesContext) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.it != old || q.stopped.Load() {
		return
	}
	if it, err := q.consume(ctx); err == nil {
		q.it = it
	}
}

// Stop makes Put return callback.ErrClosed and stops pulling events;
// those pulled ahead are handed back by Get.
func (q *Queue) Stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped.CompareAndSwap(false, true) {
		q.it.Drain()
	}
}

// Close stops the queue if Stop was not called, hands back the events
// pulled ahead and not handed out, flushes the acks of settled events to
// the server and, for an Embedded queue, closes the
// connection and shuts the server down. It does not close a connection
// given to New.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.Stop()
		q.mu.Lock()
		it := q.it
		q.mu.Unlock()
		// Hand back what was pulled ahead and never handed out: workers
		// that Close's deadline stopped did not drain it through Get.
		// Without the server, the first wait ends it.
		for {
			msg, err := it.Next(jetstream.NextMaxWait(pollWait / 5))
			if err != nil {
				break
			}
			_ = msg.Nak()
		}
		it.Stop()
		if !q.nc.IsClosed() {
			if err := q.nc.FlushTimeout(q.o.PublishTimeout); err != nil {
				q.closeErr = fmt.Errorf("natsqueue: flushing acks: %w", err)
			}
		}
		if q.release != nil {
			q.release()
		}
	})
	return q.closeErr
}

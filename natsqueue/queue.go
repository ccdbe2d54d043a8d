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
//	d, err := callback.New(callback.Config{URL: url, Queue: q.ForDispatcher()})
//
// The Dispatcher owns the Queue it is given: its Close closes it. The
// *Queue keeps what an operator calls (Replay, ReplayOne, ListDeadLetters,
// DeadLetters, Pending, Close); the methods of callback.Queue, which only
// the Dispatcher may call, are on the value ForDispatcher returns.
package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/textproto"
	"strconv"
	"strings"
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
	// ErrPublish is wrapped by the Queue's Put error, which
	// callback.Dispatcher.After returns, when JetStream did not
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
	defaultHeartbeat         = time.Second
)

// Bounds of Options.Heartbeat, nats.go's for a pull's idle heartbeat.
const (
	minHeartbeat = 500 * time.Millisecond
	maxHeartbeat = 30 * time.Second
)

// pullExpiry is how long one pull request waits on the server at most
// before the node sends a new one (longer if the heartbeat needs it).
const pullExpiry = 30 * time.Second

// Waits between two publishes of an event that JetStream did not
// acknowledge, doubling from the first to the last; publishAttempt bounds
// one publish. All within Options.PublishTimeout.
const (
	publishPauseMin = 50 * time.Millisecond
	publishPauseMax = time.Second
	publishAttempt  = time.Second
)

// handBackWait bounds how long Close waits for the events pulled ahead to
// be handed back; without the server they cannot be, and they come back
// after AckWait.
const handBackWait = 2 * time.Second

// handBackDelay is the delay of a hand-back (a Nak with a delay). A plain
// Nak only queues the event for redelivery in the consumer leader's memory:
// a leader change or a restart forgets it and the event waits for AckWait.
// A Nak with a delay is stored and replicated with the consumer's state.
const handBackDelay = time.Millisecond

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
	// hdrTrace prefixes each entry of the event's trace context
	// (Event.Trace: "Callback-Trace-Traceparent", ...), so that the node
	// that delivers the event continues the trace of After's caller.
	hdrTrace = "Callback-Trace-"
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
	// MaxWaiting is how many events a node holds, beyond Prefetch, behind
	// an earlier event of their order key (callback.WithOrderKey) that is
	// not settled yet; they count against MaxAckPending. Beyond it the
	// node hands such events back to the server, to come again after a
	// growing delay. 0 means 4096.
	MaxWaiting int

	// Heartbeat is how often the server signals a node's waiting pull
	// request. A node that misses two heartbeats, as after a leader change
	// of the consumer that lost its pull request, pulls again: it bounds
	// how long a node stays idle once the consumer has a leader again.
	// A node that misses them on a connection that is still up asks the
	// server for a PING answer; a server that does not give one within
	// two heartbeats is taken as hung (TCP open, no answers, as under
	// SIGSTOP) and the connection is moved to another server of the
	// cluster at once (nats.go's ForceReconnect), rather than after
	// nats.go's own pings notice it (2 minutes by default). The
	// connection is the one given to New: its other subscriptions move
	// with it.
	// 0 means 1 s; otherwise from 500 ms to 30 s.
	Heartbeat time.Duration

	// PublishTimeout bounds how long the Queue's Put (After) tries to
	// store an event, within After's ctx: a publish JetStream does not acknowledge (no stream
	// leader during a fail-over, a lost reply) is sent again, with the
	// same Nats-Msg-Id, until one is acknowledged or the time is up. A
	// fail-over took up to 9 s in the tests, 12 s with two servers of
	// three down for 3 s (README, Durable delivery): a PublishTimeout of
	// 20 s rode them all out; a shorter one makes After fail in a longer
	// one. 0 means 5 s.
	PublishTimeout time.Duration

	// Logger receives messages the queue skips (malformed ones) at Error
	// level, a node's lost contact with the consumer (missed heartbeats, a
	// failed pull) at Warn level and its recovery at Info level, once per
	// outage. nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	for name, d := range map[string]time.Duration{
		"MaxAge": o.MaxAge, "DeadLetterMaxAge": o.DeadLetterMaxAge,
		"AckWait": o.AckWait, "PublishTimeout": o.PublishTimeout, "Heartbeat": o.Heartbeat,
	} {
		if d < 0 {
			return o, fmt.Errorf("%w: %s is negative", ErrInvalidOptions, name)
		}
	}
	for name, n := range map[string]int{"Replicas": o.Replicas, "MaxAckPending": o.MaxAckPending, "Prefetch": o.Prefetch, "MaxWaiting": o.MaxWaiting} {
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
	o.MaxWaiting = or(o.MaxWaiting, defaultWaiting)
	o.PublishTimeout = or(o.PublishTimeout, defaultPublishTimeout)
	o.Heartbeat = or(o.Heartbeat, defaultHeartbeat)
	if o.Heartbeat < minHeartbeat || o.Heartbeat > maxHeartbeat {
		return o, fmt.Errorf("%w: Heartbeat %v is not within %v to %v", ErrInvalidOptions, o.Heartbeat, minHeartbeat, maxHeartbeat)
	}
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

// Queue keeps After events in a JetStream stream. Create it with New or
// Embedded and give q.ForDispatcher() to callback.Config.Queue; the
// Dispatcher's Close closes it. A Queue is safe for concurrent use.
//
// The Queue reads the consumer with nats.go's Consume, which watches the
// server's heartbeats even while every worker is busy: when a leader
// change of the consumer loses the node's pull request, the missed
// heartbeats make it pull again. Its handler hands each event to a
// worker, waiting for one.
type Queue struct {
	o    Options
	nc   *nats.Conn
	js   jetstream.JetStream
	work jetstream.Stream
	dead jetstream.Stream

	stopped  atomic.Bool
	stopping chan struct{} // closed by stop

	// mu guards cc, which the watcher replaces when it ended while the
	// queue runs (a deleted consumer), and stop drains.
	mu sync.Mutex
	cc jetstream.ConsumeContext

	msgs    chan jetstream.Msg // from the consumer's handler to get
	life    context.Context    // ends the watcher's waits; cancelled by Close
	cancel  context.CancelFunc
	readEnd chan struct{} // closed when the watcher returns
	readErr error         // why it returned, set before readEnd is closed

	// lostMu guards lost: since when the node has had no contact with the
	// consumer (zero while it has), for logging once per outage.
	lostMu sync.Mutex
	lost   time.Time

	silent chan struct{} // a missed heartbeat, for the watcher: see checkServer

	backs handBacks // the hand-backs sent since stop and those confirmed

	keyed keyed // the order keys of the events held or out here (order.go)

	release   func() // Embedded: closes the connection and the server
	closeOnce sync.Once
	closeErr  error
}

// ForDispatcher returns q as the callback.Queue that callback.Config.Queue
// takes: the methods with which the Dispatcher stores events, hands them
// to its workers and stops, which nothing else may call. Its Close is q's.
// Give it to one Dispatcher only.
func (q *Queue) ForDispatcher() callback.Queue { return dispatcherQueue{q} }

// dispatcherQueue is the callback.Queue of a Queue, for the Dispatcher
// alone: it keeps Put, Get and Stop out of the users' reach.
type dispatcherQueue struct{ q *Queue }

func (d dispatcherQueue) Put(ctx context.Context, ev callback.Event) error { return d.q.put(ctx, ev) }

func (d dispatcherQueue) Get(ctx context.Context) (callback.Delivery, error) { return d.q.get(ctx) }

func (d dispatcherQueue) Stop() { d.q.stop() }

func (d dispatcherQueue) Close() error { return d.q.Close() }

// New returns a Queue on the JetStream of nc, creating or checking its
// streams and its durable consumer, and starts pulling events. The caller
// keeps owning nc: Close does not close it. ctx bounds the set-up.
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
	q := &Queue{o: o, nc: nc, js: js, stopping: make(chan struct{}), msgs: make(chan jetstream.Msg), readEnd: make(chan struct{}), silent: make(chan struct{}, 1)}
	q.work, err = q.stream(ctx, jetstream.StreamConfig{
		Name:      o.Stream,
		Subjects:  []string{o.Subject + ".>"},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
		Replicas:  o.Replicas,
		MaxAge:    o.MaxAge,
		// Direct gets for the order keys' checks (order.go).
		AllowDirect: true,
	})
	if err != nil {
		return nil, err
	}
	q.allowDirect(ctx)
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
	if err := q.backs.start(nc); err != nil {
		return nil, err
	}
	if err := q.startKeyed(); err != nil {
		_ = q.backs.sub.Unsubscribe()
		return nil, fmt.Errorf("natsqueue: wake subject: %w", err)
	}
	if q.cc, err = q.consume(ctx); err != nil {
		_ = q.backs.sub.Unsubscribe()
		q.stopKeyed()
		return nil, err
	}
	// The watcher's life is the Queue's, not New's ctx: ctx bounds the
	// set-up only.
	q.life, q.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go q.watch(q.cc)
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

// allowDirect turns on direct gets on a work stream created without
// them (by an earlier version, or by an operator), for the order keys'
// checks: answered by any replica without the JetStream API's queue, a
// fraction of the cost of a message get through it. If the stream cannot
// be updated (no permission), the checks use the API, which is slower
// and as correct.
func (q *Queue) allowDirect(ctx context.Context) {
	cfg := q.work.CachedInfo().Config
	if cfg.AllowDirect {
		return
	}
	cfg.AllowDirect = true
	s, err := q.js.UpdateStream(ctx, cfg)
	if err != nil {
		q.o.Logger.Warn("natsqueue: cannot allow direct gets on the stream; order key checks use the JetStream API",
			slog.String("stream", cfg.Name), slog.String("error", err.Error()))
		return
	}
	q.work = s
}

// consume creates or updates the shared durable consumer and starts
// pulling from it.
func (q *Queue) consume(ctx context.Context) (jetstream.ConsumeContext, error) {
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
	// Consume, not Messages: its subscription queues what comes while the
	// handler waits for a worker, where the iterator's channel of
	// Prefetch messages fills with heartbeats and then drops events,
	// which wait for AckWait.
	cc, err := c.Consume(q.handle,
		jetstream.PullMaxMessages(q.o.Prefetch),
		jetstream.PullHeartbeat(q.o.Heartbeat),
		jetstream.PullExpiry(max(pullExpiry, 2*q.o.Heartbeat)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { q.lostContact(err) }),
	)
	if err != nil {
		return nil, fmt.Errorf("natsqueue: consumer %s: %w", q.o.Consumer, err)
	}
	return cc, nil
}

// put publishes ev and returns nil once JetStream has stored it. A
// publish that JetStream does not acknowledge is sent again until one is,
// within Options.PublishTimeout and ctx. The app and the webhook-id make
// the message's Nats-Msg-Id (see msgID), so an event published twice
// within the stream's duplicate window (2 min by default) is stored once,
// and two apps' events of the same webhook-id are two events.
//
// An error wraps ErrPublish: JetStream did not acknowledge the event in
// time. It may still be stored (its last publish reached a leader whose
// answer was lost or came too late) and then is delivered, under its
// webhook-id. Calling After again for it makes a second event with
// another webhook-id, unless the caller gave the event its ID with
// callback.WithEventID: then the retry is stored once within the
// duplicate window.
func (q *Queue) put(ctx context.Context, ev callback.Event) error {
	if q.stopped.Load() {
		return callback.ErrClosed
	}
	m := eventMsg(q.o.Subject, ev)
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(msgID(ev, "")), jetstream.WithExpectStream(q.o.Stream)}
	// A keyed event is marked with its node's guess of the last message
	// stored on its key's subject, which JetStream checks (order.go,
	// keyAfter); refused, it is marked with the one the refusal names,
	// and refused again, published as any other.
	keyed, marked, guesses := ev.OrderKey != "", false, 0
	mark := func(after uint64) {
		marked = true
		guesses++
		m.Header[hdrKeyAfter] = []string{strconv.FormatUint(after, 10)}
		opts = append(opts[:2], jetstream.WithExpectLastSequencePerSubject(after))
	}
	ctx, cancel := context.WithTimeout(ctx, q.o.PublishTimeout)
	defer cancel()
	if keyed {
		turn, err := q.keyed.takeTurn(ctx, m.Subject)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPublish, err)
		}
		defer q.keyed.endTurn(m.Subject, turn)
		mark(q.keyed.lastPublished(m.Subject))
	}
	pause := publishPauseMin
	for {
		one, cancelOne := context.WithTimeout(ctx, publishAttempt)
		ack, err := q.js.PublishMsg(one, m, opts...)
		cancelOne()
		if err == nil {
			if keyed {
				q.keyed.published(m.Subject, ack.Sequence)
			}
			return nil
		}
		if marked && wrongLast(err) {
			if last, ok := lastNamed(err); ok && guesses < 2 {
				mark(last)
			} else {
				marked = false
				m.Header.Del(hdrKeyAfter)
				m.Header.Del(jetstream.ExpectedLastSubjSeqHeader) // set on m by the option
				opts = opts[:2]
			}
			continue
		}
		if !publishAgain(err) || ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrPublish, err)
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", ErrPublish, err)
		}
		pause = min(2*pause, publishPauseMax)
	}
}

// errCodeInProcess is JetStream's answer to a publish whose Nats-Msg-Id is
// that of an earlier publish not yet stored (the server's
// JSStreamDuplicateMessageConflict): the earlier one may still be stored
// or fail.
const errCodeInProcess jetstream.ErrorCode = 10158

// publishAgain reports whether a publish that failed with err may succeed
// if sent again: no answer in time, no stream leader to answer, the same
// event still in process, JetStream's own "unavailable" (5xx) answers, or
// a connection between two servers (a publish in flight when the Queue
// leaves a hung server fails with nats.ErrDisconnected).
// Anything else (a closed connection, a message over max_payload, a stream
// that does not take the subject) fails the same way every time.
func publishAgain(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.Code >= 500 || api.ErrorCode == errCodeInProcess)
}

// wrongLast reports whether a publish was refused because the last
// message stored on its subject was not the one it expected (JetStream's
// "wrong last sequence", which a replicated stream may give in its own
// code, naming no sequence).
func wrongLast(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// lastNamed returns the sequence of the last message stored on the
// subject that a refusal err names ("wrong last sequence: X"), if it
// names one.
func lastNamed(err error) (uint64, bool) {
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		return 0, false
	}
	_, text, ok := strings.Cut(api.Description, ": ")
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(text, 10, 64)
	return seq, err == nil
}

// eventMsg returns the message of ev on its subject under prefix (see
// eventSubject).
func eventMsg(prefix string, ev callback.Event) *nats.Msg {
	app := strconv.Itoa(ev.AppID)
	m := nats.NewMsg(eventSubject(prefix, ev))
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
	if ev.OrderKey != "" {
		m.Header[hdrOrderKey] = []string{ev.OrderKey}
	}
	for k, v := range ev.Trace {
		m.Header[textproto.CanonicalMIMEHeaderKey(hdrTrace+k)] = []string{v}
	}
	m.Data = ev.Body
	return m
}

// decodeEvent reads an event message written by eventMsg.
func decodeEvent(h nats.Header, data []byte) (callback.Event, error) {
	ev := callback.Event{ID: h.Get(hdrID), Command: h.Get(hdrCommand), Body: data,
		ClientIP: h.Get(hdrClientIP), Platform: h.Get(hdrPlatform), OrderKey: h.Get(hdrOrderKey)}
	app, err := strconv.Atoi(h.Get(hdrAppID))
	if err != nil || ev.ID == "" || ev.Command == "" {
		return ev, ErrMalformed
	}
	ev.AppID = app
	for k, v := range h {
		// Header names arrive canonical; the trace context's keys
		// (traceparent, tracestate, baggage) are lower case.
		if name, ok := strings.CutPrefix(textproto.CanonicalMIMEHeaderKey(k), hdrTrace); ok && len(v) > 0 && name != "" {
			if ev.Trace == nil {
				ev.Trace = make(map[string]string, 2)
			}
			ev.Trace[strings.ToLower(name)] = v[0]
		}
	}
	if q := h.Get(hdrQueued); q != "" {
		if ev.Queued, err = time.Parse(time.RFC3339Nano, q); err != nil {
			return ev, ErrMalformed
		}
	}
	return ev, nil
}

// handle hands msg to a worker's get, waiting for one, or back to the
// server after stop. nats.go calls it for one message at a time.
func (q *Queue) handle(msg jetstream.Msg) {
	q.lostMu.Lock()
	if !q.lost.IsZero() {
		q.o.Logger.Info("natsqueue: consumer reached again",
			slog.String("consumer", q.o.Consumer), slog.Duration("after", time.Since(q.lost)))
		q.lost = time.Time{}
	}
	q.lostMu.Unlock()
	if q.stopped.Load() {
		_ = q.handBack(msg) // a lost one costs a redelivery after AckWait
		return
	}
	select {
	case q.msgs <- msg:
	case <-q.stopping:
		_ = q.handBack(msg) // a lost one costs a redelivery after AckWait
	}
}

// lostContact logs, once per outage, an error of the consumer: missed
// heartbeats (nats.go then pulls again), a leader change, a lost
// connection.
func (q *Queue) lostContact(err error) {
	if q.stopped.Load() {
		return
	}
	q.missedHeartbeat(err)
	q.lostMu.Lock()
	defer q.lostMu.Unlock()
	if q.lost.IsZero() {
		q.lost = time.Now()
		q.o.Logger.Warn("natsqueue: lost contact with the consumer, pulling again",
			slog.String("consumer", q.o.Consumer), slog.String("error", err.Error()))
	}
}

// watch waits for the consumption cc to end: after stop, once it has
// handed back what was pulled ahead; on a closed connection; or, when it
// ended on its own (a deleted consumer), it starts it again.
func (q *Queue) watch(cc jetstream.ConsumeContext) {
	defer close(q.readEnd)
	for {
		select {
		case <-cc.Closed():
		case <-q.silent:
			q.checkServer()
			continue
		case <-q.life.Done():
			q.readErr = callback.ErrClosed
			return
		}
		switch {
		case q.stopped.Load():
			q.readErr = callback.ErrClosed
			return
		case q.nc.IsClosed():
			q.readErr = fmt.Errorf("natsqueue: consumer %s: %w", q.o.Consumer, nats.ErrConnectionClosed)
			return
		}
		q.lostContact(errors.New("consumption ended"))
		if cc = q.restart(); cc == nil {
			q.readErr = callback.ErrClosed
			return
		}
	}
}

// restart creates the consumer again (it may have been deleted) and
// starts consuming it, retrying until that works. Once stop was called it
// returns the current consumption, drained; nil once Close was.
func (q *Queue) restart() jetstream.ConsumeContext {
	pause := publishPauseMin
	for {
		q.mu.Lock()
		if q.stopped.Load() {
			cc := q.cc
			q.mu.Unlock()
			return cc
		}
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(q.life, q.o.PublishTimeout)
		cc, err := q.consume(ctx)
		cancel()
		if err == nil {
			q.mu.Lock()
			defer q.mu.Unlock()
			q.cc = cc
			if q.stopped.Load() {
				cc.Drain() // stop drained the old one meanwhile
			}
			return cc
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-q.life.Done():
			t.Stop()
			return nil
		}
		pause = min(2*pause, 2*q.o.Heartbeat)
	}
}

// get hands out the next event; ctx bounds the wait. After stop it returns
// callback.ErrClosed: the events the node pulled ahead are handed back to
// the server, so that other nodes get them at once.
func (q *Queue) get(ctx context.Context) (callback.Delivery, error) {
	for {
		if kh := q.keyed.nextDue(); kh != nil && !q.stopped.Load() {
			if d := q.checkKey(ctx, kh); d != nil {
				return d, nil
			}
			continue
		}
		var msg jetstream.Msg
		select {
		case msg = <-q.msgs:
		case <-q.keyed.kick:
			continue
		case <-q.stopping:
			return nil, callback.ErrClosed
		case <-q.readEnd:
			return nil, q.readErr
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if q.stopped.Load() {
			_ = q.handBack(msg) // a lost one costs a redelivery after AckWait
			return nil, callback.ErrClosed
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
		if ev.OrderKey != "" {
			after, err := strconv.ParseUint(msg.Headers().Get(hdrKeyAfter), 10, 64)
			if d := q.takeKeyed(ctx, msg, ev, meta.Sequence.Stream, meta.NumDelivered, after, err == nil); d != nil {
				return d, nil
			}
			continue
		}
		return q.deliver(msg, ev, meta.Sequence.Stream), nil
	}
}

// skip logs and terminates a message that is not an event.
func (q *Queue) skip(msg jetstream.Msg, err error) {
	q.o.Logger.Error("natsqueue: message skipped", slog.String("subject", msg.Subject()), slog.String("error", err.Error()))
	_ = msg.TermWithReason(ErrMalformed.Error())
}

// stop makes put return callback.ErrClosed and stops pulling events;
// those pulled ahead are handed back to the server.
func (q *Queue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped.CompareAndSwap(false, true) {
		close(q.stopping)
		q.cc.Drain()
		q.stopKeyed()
	}
}

// Close stops the queue if the Dispatcher did not, waits a little for the
// events pulled ahead to be handed back, flushes the acks of settled
// events to the server and, for an Embedded queue, closes the connection
// and shuts the server down. It does not close a connection given to New.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.stop()
		// The handler hands back what was pulled ahead until the drained
		// consumption ends; without the server it may never.
		deadline := time.Now().Add(handBackWait)
		t := time.NewTimer(handBackWait)
		select {
		case <-q.readEnd:
		case <-t.C:
		}
		t.Stop()
		q.waitHandBacks(deadline)
		q.cancel()
		<-q.readEnd
		q.mu.Lock()
		q.cc.Stop()
		q.mu.Unlock()
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

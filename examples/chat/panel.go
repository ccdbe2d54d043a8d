package main

import (
	"context"
	"sync"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

// pollEvery is how often the panel's feed looks for news.
const pollEvery = 200 * time.Millisecond

// panelStatus is the state the panel's header shows.
type panelStatus struct {
	App     string `json:"app"`     // the demo App backend's mode: healthy, slow or down
	Breaker string `json:"breaker"` // its endpoint's circuit breaker: closed, half-open or open; "" before the first call
	Queued  int    `json:"queued"`  // After events waiting in the queue, for a worker, a retry or the breaker
	Durable bool   `json:"durable"` // the durable queue, which keeps dead letters; false: the memory queue
	Dead    int    `json:"dead"`    // dead letters kept (durable only)
}

// countWait bounds reading the durable queue's counts.
const countWait = time.Second

// historySize is how many of the attempt log's records a session gets
// when it joins the panel.
const historySize = 200

// panel feeds the page's callbacks panel: every pollEvery it sends the
// sessions that asked for it (?panel=1) the new records of the
// Dispatcher's attempt log (Dispatcher.Attempts with AfterSeq), and the
// App's mode, the breaker's state and the queue's depth when they change;
// notes tell what the chat server did with each Before answer.
type panel struct {
	s       *server
	appMode func() string

	ctx  context.Context // ends with close; bounds the feed's writes
	stop context.CancelFunc
	done chan struct{} // closed when run returns

	mu      sync.Mutex  // guards lastSeq, status, replays, and the order of what poll sends against join's
	lastSeq uint64      // of the last record sent
	status  panelStatus // as last sent
	replays replays     // of the records sent
}

// startPanel starts the feed of s's panel; close ends it.
func startPanel(s *server, appMode func() string) *panel {
	ctx, stop := context.WithCancel(context.Background())
	p := &panel{s: s, appMode: appMode, ctx: ctx, stop: stop, done: make(chan struct{}), replays: replays{}}
	p.status = p.current()
	go p.run()
	return p
}

// close ends the feed and waits for it.
func (p *panel) close() {
	p.stop()
	<-p.done
}

func (p *panel) run() {
	defer close(p.done)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			p.poll()
		}
	}
}

// poll sends the watchers what changed since the last poll.
func (p *panel) poll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs := p.s.d.Attempts(callback.AttemptQuery{ByApp: true, AppID: p.s.appID, AfterSeq: p.lastSeq})
	if len(recs) > 0 {
		p.lastSeq = recs[len(recs)-1].Seq
		p.broadcast(frame{Type: "callbacks", Callbacks: entries(recs, p.replays)})
	}
	if st := p.current(); st != p.status {
		p.status = st
		p.broadcast(frame{Type: "status", Status: &st})
	}
}

// current reads the panel's status now.
func (p *panel) current() panelStatus {
	stats := p.s.d.Stats()
	st := panelStatus{App: p.appMode(), Queued: stats.QueueDepth}
	if dead := p.s.dead; dead != nil {
		// The durable queue counts its own: QueueDepth is the memory
		// queue's. A count that cannot be read keeps the last one shown.
		st.Durable, st.Queued, st.Dead = true, p.status.Queued, p.status.Dead
		ctx, cancel := context.WithTimeout(p.ctx, countWait)
		defer cancel()
		if n, err := dead.Pending(ctx); err == nil {
			st.Queued = int(n)
		}
		if n, err := dead.DeadLetters(ctx); err == nil {
			st.Dead = int(n)
		}
	}
	for _, state := range stats.Breakers { // one endpoint here; show the worst
		if rank(state) > rank(st.Breaker) {
			st.Breaker = state
		}
	}
	return st
}

func rank(breaker string) int {
	switch breaker {
	case "closed":
		return 1
	case "half-open":
		return 2
	case "open":
		return 3
	}
	return 0
}

// join makes name a watcher of the panel and sends it the status and the
// last historySize records that poll has sent.
func (p *panel) join(ctx context.Context, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	p.s.send(ctx, name, frame{Type: "status", Status: &st})
	recs := p.s.d.Attempts(callback.AttemptQuery{ByApp: true, AppID: p.s.appID, Limit: historySize})
	for len(recs) > 0 && recs[len(recs)-1].Seq > p.lastSeq { // poll sends these
		recs = recs[:len(recs)-1]
	}
	if len(recs) > 0 {
		// Marked as replays afresh: the history may begin after a dead
		// letter that poll saw.
		p.s.send(ctx, name, frame{Type: "callbacks", Callbacks: entries(recs, replays{})})
	}
	p.s.mu.Lock()
	p.s.watchers[name] = true
	p.s.mu.Unlock()
}

// broadcast sends f to every watcher.
func (p *panel) broadcast(f frame) {
	p.s.mu.Lock()
	names := make([]string, 0, len(p.s.watchers))
	for name := range p.s.watchers {
		names = append(names, name)
	}
	p.s.mu.Unlock()
	for _, name := range names {
		p.s.send(p.ctx, name, f)
	}
}

// note tells the watchers what the chat server did with the Before answer
// r of the message or operation id: who decided (the App backend, or the
// Dispatcher because the callback failed), the effect and what it meant.
func (s *server) note(id string, r callback.Response, effect, what string) {
	who := "the App backend decided"
	if r.Err != nil {
		who = "the callback failed, the Dispatcher failed open"
		if r.Action == callback.Deny {
			who = "the callback failed, the Dispatcher failed closed"
		}
	}
	s.panel.broadcast(frame{Type: "note", ID: id + "/before", Effect: effect, Text: who + "; " + effect + ": " + what})
}

// replays tells the records of a replayed After event from its first
// life's: a dead-lettered event gets no more records unless it is
// replayed, and a replay starts again at attempt 1 (without a queued
// record: After was not called again). It maps the webhook-ids of the
// events dead-lettered so far to their state; nothing else is kept.
type replays map[string]*replayState

type replayState struct {
	dead bool // its last record so far is a dead letter
	n    int  // replays so far
}

// of returns the replay a, a record newer than every one seen so far,
// belongs to: 0 for the event's first life, n for its nth replay.
func (rs replays) of(a callback.Attempt) int {
	if a.Kind != callback.KindAfter {
		return 0
	}
	st := rs[a.EventID]
	if st == nil {
		if a.Outcome != callback.OutcomeDeadLettered {
			return 0
		}
		st = &replayState{}
		rs[a.EventID] = st
	}
	if a.Outcome == callback.OutcomeQueued {
		return st.n // After's acceptance, recorded after the first attempt's dead letter
	}
	if st.dead {
		st.n++ // a record after its dead letter: replayed
	}
	st.dead = a.Outcome == callback.OutcomeDeadLettered
	return st.n
}

// entries returns the panel's view of recs, in Seq order, marking the
// records of replays by rs, which it updates.
func entries(recs []callback.Attempt, rs replays) []callbackEntry {
	out := make([]callbackEntry, len(recs))
	for i, a := range recs {
		e := callbackEntry{
			Seq: a.Seq, Time: a.Time.Local().Format(inspector.TimeFormat), Kind: a.Kind, Command: a.Command, EventID: a.EventID,
			Attempt: a.Attempt, Replay: rs.of(a), Outcome: string(a.Outcome), Status: a.Status,
			LatencyMS: float64(a.Latency.Microseconds()) / 1000, Error: a.Error, Explain: inspector.Explain(a),
			OrderKey: a.OrderKey, WaitsFor: a.WaitsFor,
		}
		if a.Kind == callback.KindBefore {
			switch a.Outcome {
			case callback.OutcomeFailedOpen, callback.OutcomeFailedClosed:
				e.By = "dispatcher"
			default:
				e.By = "app"
			}
		}
		out[i] = e
	}
	return out
}

// callbackEntry is one record of the Dispatcher's attempt log as the panel
// shows it: a Before call, or an After event's acceptance or attempt.
type callbackEntry struct {
	Seq     uint64 `json:"seq"`
	Time    string `json:"time"` // when the record was made, in local time with its zone (inspector.TimeFormat)
	Kind    string `json:"kind"` // before or after
	Command string `json:"command"`
	EventID string `json:"event_id"` // the webhook-id: m7/before, m7/after
	Attempt int    `json:"attempt"`  // from 1; 0 for an After event's acceptance; a postponement has the next attempt's
	// Replay is which replay of a dead-lettered After event the record
	// belongs to: 0 for its first life, 1 for its first replay, ... A
	// replay starts again at attempt 1.
	Replay    int     `json:"replay,omitempty"`
	Outcome   string  `json:"outcome"`
	By        string  `json:"by,omitempty"` // Before: "app" when the App backend answered, "dispatcher" when the callback failed and the Dispatcher decided
	Status    int     `json:"status,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`   // why it failed, raw, as logged
	Explain   string  `json:"explain,omitempty"` // why it failed, in plain words (inspector.Explain)
	// OrderKey is an After event's order key, its conversation: group:g1,
	// dm:alice|bob. WaitsFor is, on its acceptance, the event of that key
	// it waits for, if any.
	OrderKey string `json:"order_key,omitempty"`
	WaitsFor string `json:"waits_for,omitempty"`
}

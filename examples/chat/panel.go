package main

import (
	"context"
	"sync"
	"time"

	"github.com/imcallback/callback"
)

// pollEvery is how often the panel's feed looks for news.
const pollEvery = 200 * time.Millisecond

// panelStatus is the state the panel's header shows.
type panelStatus struct {
	App     string `json:"app"`     // the demo App backend's mode: healthy, slow or down
	Breaker string `json:"breaker"` // its endpoint's circuit breaker: closed, half-open or open; "" before the first call
	Queued  int    `json:"queued"`  // After events waiting in the memory queue, for a worker or a retry
}

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

	mu      sync.Mutex  // guards lastSeq, status, and the order of what poll sends against join's
	lastSeq uint64      // of the last record sent
	status  panelStatus // as last sent
}

// startPanel starts the feed of s's panel; close ends it.
func startPanel(s *server, appMode func() string) *panel {
	ctx, stop := context.WithCancel(context.Background())
	p := &panel{s: s, appMode: appMode, ctx: ctx, stop: stop, done: make(chan struct{})}
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
		p.broadcast(frame{Type: "callbacks", Callbacks: entries(recs)})
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
		p.s.send(ctx, name, frame{Type: "callbacks", Callbacks: entries(recs)})
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

// entries returns the panel's view of recs.
func entries(recs []callback.Attempt) []callbackEntry {
	out := make([]callbackEntry, len(recs))
	for i, a := range recs {
		e := callbackEntry{
			Seq: a.Seq, Time: a.Time.UTC().Format("15:04:05.000"), Kind: a.Kind, Command: a.Command, EventID: a.EventID,
			Attempt: a.Attempt, Outcome: string(a.Outcome), Status: a.Status,
			LatencyMS: float64(a.Latency.Microseconds()) / 1000, Error: a.Error,
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
	Seq       uint64  `json:"seq"`
	Time      string  `json:"time"` // when the record was made, hh:mm:ss.mmm UTC
	Kind      string  `json:"kind"` // before or after
	Command   string  `json:"command"`
	EventID   string  `json:"event_id"` // the webhook-id: m7/before, m7/after
	Attempt   int     `json:"attempt"`  // from 1; 0 for an After event's acceptance
	Outcome   string  `json:"outcome"`
	By        string  `json:"by,omitempty"` // Before: "app" when the App backend answered, "dispatcher" when the callback failed and the Dispatcher decided
	Status    int     `json:"status,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

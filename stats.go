package callback

import (
	"context"
	"net/http"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Counts are the numbers of callbacks by outcome, since New.
type Counts struct {
	// Before calls that sent, or tried to send, a request (a disabled
	// command is not counted), by outcome.
	Allowed, Denied, Dropped uint64 // the App backend answered
	FailedOpen               uint64 // the callback failed and the event was allowed
	FailedClosed             uint64 // the callback failed and the event was denied (Rule.FailClosed)
	// Before calls under a shadow rule (Rule.Shadow) that the App backend
	// answered, by its answer; each was allowed. Their failures count as
	// FailedOpen.
	ShadowAllowed, ShadowDenied, ShadowDropped uint64

	// After events.
	Queued       uint64 // accepted by After
	RejectedFull uint64 // refused by After with ErrQueueFull
	Delivered    uint64 // answered with a 2xx
	Retried      uint64 // retry attempts (not events): an event delivered at its third attempt counts 2
	DeadLettered uint64 // given up and handed to the dead-letter hook
}

// snapshot reads c's counters.
func (c *commandStats) snapshot() Counts {
	return Counts{
		Allowed:       c.counts[outAllowed].Load(),
		Denied:        c.counts[outDenied].Load(),
		Dropped:       c.counts[outDropped].Load(),
		FailedOpen:    c.counts[outFailedOpen].Load(),
		FailedClosed:  c.counts[outFailedClosed].Load(),
		ShadowAllowed: c.counts[outShadowAllowed].Load(),
		ShadowDenied:  c.counts[outShadowDenied].Load(),
		ShadowDropped: c.counts[outShadowDropped].Load(),
		Queued:        c.counts[outQueued].Load(),
		RejectedFull:  c.counts[outRejectedFull].Load(),
		Delivered:     c.counts[outDelivered].Load(),
		Retried:       c.counts[outRetried].Load(),
		DeadLettered:  c.counts[outDeadLettered].Load(),
	}
}

// plus returns the sum of c and n.
func (c Counts) plus(n Counts) Counts {
	return Counts{
		Allowed:       c.Allowed + n.Allowed,
		Denied:        c.Denied + n.Denied,
		Dropped:       c.Dropped + n.Dropped,
		FailedOpen:    c.FailedOpen + n.FailedOpen,
		FailedClosed:  c.FailedClosed + n.FailedClosed,
		ShadowAllowed: c.ShadowAllowed + n.ShadowAllowed,
		ShadowDenied:  c.ShadowDenied + n.ShadowDenied,
		ShadowDropped: c.ShadowDropped + n.ShadowDropped,
		Queued:        c.Queued + n.Queued,
		RejectedFull:  c.RejectedFull + n.RejectedFull,
		Delivered:     c.Delivered + n.Delivered,
		Retried:       c.Retried + n.Retried,
		DeadLettered:  c.DeadLettered + n.DeadLettered,
	}
}

// Stats is a snapshot of a Dispatcher's counters and gauges: the numbers
// its metrics report, read without any OpenTelemetry SDK.
type Stats struct {
	Total Counts // all commands
	// Commands holds the counts of each command label the metrics use: the
	// configured commands, the first 64 others seen, and "_other" for the
	// rest. Labels with nothing counted are left out.
	Commands map[string]Counts

	QueueDepth int // After events in the memory queue, waiting for a worker or a retry's time
	// OldestQueued is how long the oldest of them has waited since After
	// queued it, whichever endpoint it is for and whether it waits for a
	// worker, a retry or an open breaker; 0 when none.
	OldestQueued time.Duration
	// WaitingForKey is how many of them wait behind an earlier event of
	// their order key (WithOrderKey), not yet in their endpoint's queue.
	// With a Config.Queue it is 0: natsqueue's WaitingForKey reports its
	// node's.
	WaitingForKey int
	ActiveBefore  int // Before calls in flight
	ActiveAfter   int // After attempts in flight

	// Breakers holds the circuit breaker state of each endpoint called so
	// far, by URL (without query or credentials): "closed", "half-open" or
	// "open". Empty when Config.Breaker.Disabled.
	Breakers map[string]string

	// Disabled lists the disabled endpoints (see HealthPolicy) and Failing
	// those whose attempts fail since their last success, by URL as in
	// Breakers, sorted; nil when none.
	Disabled []string
	Failing  []string
}

// Stats returns a snapshot of the Dispatcher's counters and gauges. It is
// cheap (atomic loads and small maps; with events in the memory queue it
// looks at the first event of each endpoint's and at each retry's, under
// the queue's locks, which After and the workers take only briefly) and
// safe to call at any time, also after Close. The counters are read one by one, so a
// snapshot taken under load may be off by the calls in flight.
func (d *Dispatcher) Stats() Stats {
	o := d.obs
	s := Stats{Commands: make(map[string]Counts)}
	o.each(func(c *commandStats) {
		if n := c.snapshot(); n != (Counts{}) {
			s.Commands[c.name] = n
			s.Total = s.Total.plus(n)
		}
	})
	s.QueueDepth, s.OldestQueued = o.queue()
	if d.mem != nil {
		s.WaitingForKey = d.mem.waitingForKey()
	}
	s.ActiveBefore = int(o.active[0].Load())
	s.ActiveAfter = int(o.active[1].Load())
	s.Breakers = make(map[string]string)
	d.urls.states(func(url string, state gobreaker.State) { s.Breakers[url] = state.String() })
	s.Disabled, s.Failing = d.urls.healthOf()
	return s
}

// queueState returns the number of events in the memory queue and when the
// oldest of them was queued. A Config.Queue reports 0: its depth is the
// queue's own to report (natsqueue's Pending).
func (d *Dispatcher) queueState() (int, time.Time) {
	if d.mem == nil {
		return 0, time.Time{}
	}
	n := d.mem.len()
	if n == 0 {
		return 0, time.Time{}
	}
	return n, d.mem.oldest()
}

// beginBefore notes a Before call in flight and returns its command's stats.
func (o *observer) beginBefore(command string) *commandStats {
	o.active[0].Add(1)
	return o.command(command)
}

// endBefore counts a Before call that began at start and returned r, and
// returns how long it took.
func (c *commandStats) endBefore(ctx context.Context, start time.Time, r Response) time.Duration {
	o := c.o
	o.active[0].Add(-1)
	out := beforeOutcome(r)
	c.counts[out].Add(1)
	took := time.Since(start)
	o.duration.Record(ctx, took.Seconds(), c.record[out]...)
	return took
}

func beforeOutcome(r Response) outcome {
	if s := r.Shadow; s != nil && s.Err == nil {
		switch s.Action {
		case Deny:
			return outShadowDenied
		case Drop:
			return outShadowDropped
		}
		return outShadowAllowed
	}
	switch {
	case r.Err != nil && r.Action == Deny:
		return outFailedClosed
	case r.Err != nil:
		return outFailedOpen
	case r.Action == Deny:
		return outDenied
	case r.Action == Drop:
		return outDropped
	}
	return outAllowed
}

// queued counts an After event that entered the queue.
func (c *commandStats) queued() { c.counts[outQueued].Add(1) }

// rejected counts an After event refused because the queue was full.
func (c *commandStats) rejected() { c.counts[outRejectedFull].Add(1) }

// ended counts an After event whose delivery ended with err: delivered
// when nil, dead-lettered otherwise.
func (c *commandStats) ended(err error) {
	if err == nil {
		c.counts[outDelivered].Add(1)
	} else {
		c.counts[outDeadLettered].Add(1)
	}
}

// attemptStart notes the start of an After attempt, counting a retry for
// every attempt after the first. c may be nil.
func (c *commandStats) attemptStart(n int) time.Time {
	if c == nil {
		return time.Time{}
	}
	if n > 1 {
		c.counts[outRetried].Add(1)
	}
	c.o.active[1].Add(1)
	return time.Now()
}

// attemptEnd records the duration of an After attempt that began at start,
// and returns it (0 when c is nil).
func (c *commandStats) attemptEnd(ctx context.Context, start time.Time, res *http.Response, err error) time.Duration {
	if c == nil {
		return 0
	}
	c.o.active[1].Add(-1)
	out := outAttemptFailed
	if err == nil && res.StatusCode >= 200 && res.StatusCode < 300 {
		out = outDelivered
	}
	took := time.Since(start)
	c.o.duration.Record(ctx, took.Seconds(), c.record[out]...)
	return took
}

package callback

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// failure is one failed callback, as the failure log needs it. It is kept
// by value until a line is written, so a suppressed failure allocates no
// log record.
type failure struct {
	appID      int
	command    string
	webhookID  string
	elapsed    time.Duration // Before: time the call took
	attempts   int           // After: requests made
	bodyBytes  int           // After: size of the body that was not delivered
	failClosed bool          // Before: the command fails closed
	err        error
}

// floodLog logs the failures of one kind of callback (before or after) to
// one endpoint without flooding the log when the endpoint is down: the
// first failure is logged at once with every detail; while failures go on,
// they are counted and one summary line per interval reports how many there
// were and the last one's cause; the first success once no failure has
// occurred for an interval logs the recovery. An endpoint that keeps
// failing now and then (flapping) therefore stays "failing" and is
// summarised too, rather than logging a failure and a recovery each time.
//
// Every line carries "failures": the number of failures it accounts for
// that no earlier line did, so the lines add up to every failure. No
// goroutine is involved: a summary is written by the failure or success
// that finds the interval elapsed, and Close flushes what is left.
//
// A floodLog is safe for concurrent use.
type floodLog struct {
	log      *slog.Logger
	kind     string // before or after
	failMsg  string // the message of a failure logged in full
	url      string // the endpoint, redacted
	interval time.Duration
	now      func() time.Time // test seam

	// failing mirrors run.failing and lastFail run.lastFail (as Unix
	// nanoseconds), so that a success costs no lock.
	failing  atomic.Bool
	lastFail atomic.Int64

	mu  sync.Mutex
	run struct { // guarded by mu
		failing  bool
		since    time.Time // first failure of the run
		lastLine time.Time // when the last line was written
		lastFail time.Time // when the last failure happened
		total    int       // failures in the run
		pending  int       // failures no line has accounted for yet
		last     failure   // the most recent failure
	}
}

func newFloodLog(log *slog.Logger, kind, failMsg, url string, interval time.Duration) *floodLog {
	return &floodLog{log: log, kind: kind, failMsg: failMsg, url: url, interval: interval, now: time.Now}
}

// fail logs f, or counts it for the next summary line.
func (l *floodLog) fail(ctx context.Context, f failure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	r := &l.run
	r.total++
	r.last = f
	r.lastFail = now
	l.lastFail.Store(now.UnixNano())
	if !r.failing || l.interval < 0 {
		if !r.failing {
			r.failing, r.since, r.total = true, now, 1
			l.failing.Store(true)
		}
		r.lastLine = now
		l.write(ctx, slog.LevelError, l.failMsg, f, 1)
		return
	}
	r.pending++
	if now.Sub(r.lastLine) >= l.interval {
		l.summary(ctx, now)
	}
}

// ok notes a success. After failures, the first success once none has
// occurred for an interval logs the recovery, with the failures no line has
// reported yet.
func (l *floodLog) ok(ctx context.Context) {
	if !l.failing.Load() {
		return
	}
	now := l.now()
	if now.UnixNano()-l.lastFail.Load() < int64(l.interval) {
		return // a failure too recent to call it recovered
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &l.run
	if !r.failing || now.Sub(r.lastFail) < l.interval {
		return
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "callback: "+l.kind+" recovered",
		slog.String("url", l.url),
		slog.Int("failures", r.pending),
		slog.Int("total_failures", r.total),
		slog.Duration("failing_for", r.lastFail.Sub(r.since)),
		slog.String("error", errString(r.last.err)),
	)
	r.failing, r.pending, r.total, r.last = false, 0, 0, failure{}
	l.failing.Store(false)
}

// flush writes a summary of the failures not yet logged, if any. Close
// calls it.
func (l *floodLog) flush(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run.pending > 0 {
		l.summary(ctx, l.now())
	}
}

// summary writes the line for the pending failures. l.mu is held.
func (l *floodLog) summary(ctx context.Context, now time.Time) {
	r := &l.run
	l.write(ctx, slog.LevelError, "callback: "+l.kind+" failures continue", r.last, r.pending,
		slog.Duration("failing_for", now.Sub(r.since)))
	r.pending = 0
	r.lastLine = now
}

// write logs one line about f (or, in a summary, the last failure) that
// accounts for n failures.
func (l *floodLog) write(ctx context.Context, level slog.Level, msg string, f failure, n int, extra ...slog.Attr) {
	attrs := make([]slog.Attr, 0, 10+len(extra))
	attrs = append(attrs,
		slog.Int("app_id", f.appID),
		slog.String("command", loggedCommand(f.command)),
		slog.String("url", l.url),
		slog.String("webhook_id", f.webhookID),
	)
	if l.kind == kindBefore {
		attrs = append(attrs, slog.Duration("elapsed", f.elapsed), slog.Bool("fail_closed", f.failClosed))
	} else {
		attrs = append(attrs, slog.Int("attempt", f.attempts), slog.Int("body_bytes", f.bodyBytes))
	}
	attrs = append(attrs, slog.String("error", errString(f.err)), slog.Int("failures", n))
	attrs = append(attrs, extra...)
	l.log.LogAttrs(ctx, level, msg, attrs...)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

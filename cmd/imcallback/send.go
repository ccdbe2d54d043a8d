package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/internal/answer"
	"github.com/imcallback/callback/openim"
	"github.com/imcallback/callback/tencent"
)

const sendHead = `Usage: imcallback send [flags]

Fires one callback at an App backend through the imcallback library, as an
IM server would, and prints the App's decision, the latency and the answer
(code, msg and data as the library read them, then the raw answer). A
before-callback (the default) makes one attempt and waits for the decision;
with --after it is an after-callback, delivered with --retries retries,
whose answer only counts as delivered or not.

The body is the JSON from --body, from --body-file (- for standard input),
or, with neither, from standard input.

With --count N, --concurrency C above 1, --duration or --rate it is a small
load generator: it sends N callbacks (or as many as --duration allows) over
C concurrent callers, at most --rate a second, shows a progress line on
standard error and prints a summary: throughput, latency percentiles of the
answered calls, outcomes, and the failures by cause (breaker open,
timeout, refused, status N, ...). With --after the load is after-callbacks:
queued, then delivered by C workers; the summary counts the delivered and
the dead-lettered by cause.

A non-2xx answer's body (its first KiB) is shown, quoted: it often says
why (a 401's signature problem). --json prints one JSON object instead of
the text, for jq.

Examples:
  imcallback send --command message.send.before --body '{"text":"hello"}'
  echo '{"text":"hi"}' | imcallback send --protocol tencent --secret TOKEN --command C2C.CallbackBeforeSendMsg
  imcallback send --after --command message.send.after --body-file event.json
  imcallback send --count 10000 --concurrency 64 --body '{"text":"load"}'
  imcallback send --duration 30s --rate 500 --concurrency 16 --body '{}' --json | jq .failures
`

const sendTail = `
Exit status:
  0  the App allowed (with --after: the event was delivered; load mode: no callback failed)
  1  the callback failed: no answer, timeout, non-2xx status, an answer that is not the protocol's
     (load mode: at least one failed); or the command could not run
  2  bad flags or arguments
  3  the App denied
  4  the App dropped the event (Tencent's ErrorCode 2)
`

// sendFlags are send's settings.
type sendFlags struct {
	url, command, body, bodyFile string
	secret, clientIP, platform   string
	app, retries                 int
	count, concurrency           int
	timeout, duration            time.Duration
	rate                         float64
	protocol                     callback.Protocol
	after, json                  bool
}

func runSend(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f sendFlags
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.StringVar(&f.url, "url", "http://127.0.0.1:8989/callback", "the App backend's callback `URL`")
	fs.IntVar(&f.app, "app", 10000, "the app `ID` (appcommand: appId; tencent: SdkAppid; openim sends none)")
	fs.StringVar(&f.command, "command", "", "the callback `command`; empty means message.send.before (appcommand), C2C.CallbackBeforeSendMsg (tencent) or callbackBeforeSendSingleMsgCommand (openim), or their after-commands with --after")
	fs.StringVar(&f.body, "body", "", "the event's JSON `body`")
	fs.StringVar(&f.bodyFile, "body-file", "", "read the body from `file`; - is standard input")
	fs.TextVar(&f.protocol, "protocol", callback.AppCommand, "the wire `protocol`: appcommand, tencent or openim")
	fs.StringVar(&f.secret, "secret", os.Getenv("CALLBACK_SECRET"), "sign with this `secret`: whsec_... Standard Webhooks secret(s) for seed, the token for tencent; default $CALLBACK_SECRET")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Second, "bound of one request")
	fs.BoolVar(&f.after, "after", false, "send after-callbacks instead of before-callbacks")
	fs.IntVar(&f.retries, "retries", 0, "with --after: retries on transport errors, 408, 429 and 5xx")
	fs.StringVar(&f.clientIP, "client-ip", "", "tencent: the end user's `IP`, sent as ClientIP")
	fs.StringVar(&f.platform, "platform", "", "tencent: the end user's `platform`, sent as OptPlatform (Web, Android, iOS, ...)")
	fs.IntVar(&f.count, "count", 1, "load mode: how many callbacks to send; with --duration and no --count, no limit")
	fs.IntVar(&f.concurrency, "concurrency", 1, "load mode: how many callers send at once (with --after: delivery workers)")
	fs.DurationVar(&f.duration, "duration", 0, "load mode: send for this long, then stop")
	fs.Float64Var(&f.rate, "rate", 0, "load mode: at most this many callbacks a `second`, over all callers; 0 means as fast as they go")
	fs.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	fs.Usage = usageFunc(fs, sendHead, sendTail)
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	countGiven := false
	fs.Visit(func(fl *flag.Flag) { countGiven = countGiven || fl.Name == "count" })

	load := f.count > 1 || f.concurrency > 1 || f.duration > 0 || f.rate > 0
	switch {
	case f.count < 1 || f.concurrency < 1:
		return fail(stderr, exitUsage, "imcallback send: --count and --concurrency must be at least 1")
	case f.duration < 0 || f.rate < 0 || math.IsNaN(f.rate) || math.IsInf(f.rate, 0):
		return fail(stderr, exitUsage, "imcallback send: --duration and --rate must not be negative")
	case f.body != "" && f.bodyFile != "":
		return fail(stderr, exitUsage, "imcallback send: give --body or --body-file, not both")
	case f.retries < 0:
		return fail(stderr, exitUsage, "imcallback send: --retries must not be negative")
	}
	if f.duration > 0 && !countGiven {
		f.count = math.MaxInt
	}
	body, err := readBody(f.body, f.bodyFile, stdin)
	if err != nil {
		return fail(stderr, exitUsage, "imcallback send: %v", err)
	}
	if f.command == "" {
		f.command = defaultCommand(f.protocol, f.after)
	}

	dead := &deadLetters{causes: map[string]int{}}
	retries := f.retries
	if retries == 0 {
		retries = -1 // Config's zero means the default, 4
	}
	workers, queue := 1, 0
	if load && f.after {
		workers = f.concurrency
		if f.count != math.MaxInt {
			queue = min(f.count, 1<<20) // every event fits: the load is the delivery's
		}
	}
	d, err := callback.New(callback.Config{
		Health:              noDisable, // a tool reports every answer
		URL:                 f.url,
		Protocol:            f.protocol,
		Secret:              f.secret,
		Timeout:             f.timeout,
		Retries:             retries,
		RetryWaitMin:        100 * time.Millisecond,
		RetryWaitMax:        2 * time.Second,
		Workers:             workers,
		QueueSize:           queue,
		MaxIdleConnsPerHost: f.concurrency,
		Logger:              slog.New(slog.DiscardHandler), // failures are reported below
		DeadLetter:          dead.record,
	})
	if err != nil {
		return fail(stderr, exitUsage, "imcallback send: %v", err)
	}
	if f.clientIP != "" || f.platform != "" {
		ctx = callback.WithClient(ctx, f.clientIP, f.platform)
	}

	switch {
	case load:
		code := sendLoad(ctx, d, &f, body, dead, stdout, stderr)
		closeDispatcher(stderr, "imcallback send", d)
		return code
	case f.after:
		return sendAfter(ctx, d, &f, body, dead, stdout, stderr)
	}
	defer closeDispatcher(stderr, "imcallback send", d)
	start := time.Now()
	var raw, refusal []byte
	r := d.Before(callback.WithStatusBody(answer.With(ctx, &raw), &refusal), f.app, f.command, body)
	elapsed := time.Since(start)
	if f.json {
		writeJSON(stdout, beforeJSON(f.command, r, raw, refusal, elapsed))
	}
	if r.Err != nil {
		if !f.json {
			if len(refusal) > 0 {
				fmt.Fprintf(stdout, "body:     %s\n", strconv.QuoteToGraphic(string(refusal)))
			}
			if raw != nil { // a 2xx answer that is not the protocol's
				fmt.Fprintf(stdout, "answer:   %s\n", strconv.QuoteToGraphic(string(bytes.TrimSpace(raw))))
			}
		}
		return fail(stderr, exitFailure, "imcallback send: %s %s failed after %v: %v", f.protocol, f.command, round(elapsed), r.Err)
	}
	if !f.json {
		printResponse(newPainter(stdout), r, raw, elapsed)
	}
	switch r.Action {
	case callback.Deny:
		return exitDeny
	case callback.Drop:
		return exitDrop
	}
	return exitAllow
}

// defaultCommand is the message-send command of p.
func defaultCommand(p callback.Protocol, after bool) string {
	switch {
	case p == callback.Tencent && after:
		return tencent.C2CAfterSendMsg
	case p == callback.Tencent:
		return tencent.C2CBeforeSendMsg
	case p == callback.OpenIM && after:
		return openim.AfterSendSingleMsg
	case p == callback.OpenIM:
		return openim.BeforeSendSingleMsg
	case after:
		return command.MessageSendAfter
	}
	return command.MessageSendBefore
}

// readBody returns the body from the flag, the file or stdin, checked to be
// JSON.
func readBody(body, file string, stdin io.Reader) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case body != "":
		b = []byte(body)
	case file != "" && file != "-":
		if b, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("--body-file: %w", err)
		}
	case stdin == nil:
		return nil, errors.New("no body: give --body or --body-file")
	default:
		if f, ok := stdin.(*os.File); ok && file == "" {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				return nil, errors.New("no body: give --body or --body-file, or pipe the JSON on standard input")
			}
		}
		if b, err = io.ReadAll(io.LimitReader(stdin, 16<<20)); err != nil {
			return nil, fmt.Errorf("reading the body from standard input: %w", err)
		}
	}
	b = bytes.TrimSpace(b)
	if !json.Valid(b) {
		return nil, errors.New("the body is not valid JSON")
	}
	return b, nil
}

// printResponse prints a Before decision and the raw answer it came from
// (none when the callback failed before a 2xx answer was read).
func printResponse(p painter, r callback.Response, raw []byte, elapsed time.Duration) {
	fmt.Fprintf(p.w, "decision: %s\n", p.paint(actionColour(r.Action), r.Action.String()))
	fmt.Fprintf(p.w, "code:     %d\n", r.Code)
	fmt.Fprintf(p.w, "msg:      %s\n", strconv.QuoteToGraphic(r.Msg))
	if r.Data != nil {
		fmt.Fprintf(p.w, "data:     %s\n", graphicJSON(indent(r.Data, "          ")))
	}
	if raw != nil {
		fmt.Fprintf(p.w, "answer:   %s\n", graphicJSON(string(bytes.TrimSpace(raw))))
	}
	fmt.Fprintf(p.w, "latency:  %v\n", round(elapsed))
}

// sendJSON is send's --json output for one callback.
type sendJSON struct {
	Command   string          `json:"command"`
	Decision  string          `json:"decision,omitempty"` // allow, deny or drop; empty when it failed
	Code      *int            `json:"code,omitempty"`
	Msg       *string         `json:"msg,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Answer    any             `json:"answer,omitempty"` // the raw 2xx answer: JSON, or a string when it is not
	Delivered *bool           `json:"delivered,omitempty"`
	Error     string          `json:"error,omitempty"`
	Cause     string          `json:"cause,omitempty"`       // as in load mode's failures
	Body      string          `json:"status_body,omitempty"` // the first KiB of a non-2xx answer
	LatencyMS float64         `json:"latency_ms"`
}

func beforeJSON(command string, r callback.Response, raw, refusal []byte, elapsed time.Duration) sendJSON {
	j := sendJSON{Command: command, LatencyMS: ms(elapsed), Body: string(refusal)}
	if raw != nil {
		if json.Valid(raw) {
			j.Answer = json.RawMessage(bytes.TrimSpace(raw))
		} else {
			j.Answer = string(raw)
		}
	}
	if r.Err != nil {
		j.Error, j.Cause = r.Err.Error(), cause(r.Err)
		return j
	}
	j.Decision, j.Code, j.Msg, j.Data = r.Action.String(), &r.Code, &r.Msg, r.Data
	return j
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// deadLetters keeps the errors of undelivered after-callbacks.
type deadLetters struct {
	mu     sync.Mutex
	first  error
	n      int
	causes map[string]int
}

func (d *deadLetters) record(_ callback.Event, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.first == nil {
		d.first = err
	}
	d.n++
	d.causes[cause(err)]++
}

func (d *deadLetters) get() (n int, causes map[string]int, first error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n, maps.Clone(d.causes), d.first
}

// closeDispatcher closes d, bounded by its Config.DrainTimeout, and prints
// a failure on stderr after the command's name: a drain cut short loses
// events, and even a Dispatcher that sent only Before calls should close
// cleanly, so a failure is worth seeing.
func closeDispatcher(stderr io.Writer, name string, d *callback.Dispatcher) {
	if err := d.Close(context.Background()); err != nil {
		fmt.Fprintf(stderr, "%s: closing: %v\n", name, err)
	}
}

// sendAfter queues one after-callback and waits for its delivery.
func sendAfter(ctx context.Context, d *callback.Dispatcher, f *sendFlags, body []byte, dead *deadLetters, stdout, stderr io.Writer) int {
	start := time.Now()
	err := d.After(ctx, f.app, f.command, body)
	if err == nil {
		// Close waits for the delivery; ctx (Ctrl-C) cuts it short.
		err = d.Close(ctx)
	} else {
		closeDispatcher(stderr, "imcallback send", d)
	}
	elapsed := time.Since(start)
	if err == nil {
		_, _, err = dead.get()
	}
	if f.json {
		delivered := err == nil
		j := sendJSON{Command: f.command, Delivered: &delivered, LatencyMS: ms(elapsed)}
		if err != nil {
			j.Error, j.Cause = err.Error(), cause(err)
		}
		writeJSON(stdout, j)
	}
	if err != nil {
		return fail(stderr, exitFailure, "imcallback send: %s %s not delivered after %v: %v", f.protocol, f.command, round(elapsed), err)
	}
	if !f.json {
		fmt.Fprintf(stdout, "delivered: %s (an after-callback: its answer is not read)\nlatency:   %v\n", f.command, round(elapsed))
	}
	return exitAllow
}

// cause names why a callback failed, for load mode's breakdown: "breaker
// open", "timeout", "refused", "status N", "redirect N", "bad answer",
// "unknown host", "reset", "queue full", "closed", "canceled" or
// "unreachable".
func cause(err error) string {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, callback.ErrBreakerOpen):
		return "breaker open"
	case errors.Is(err, callback.ErrStatus):
		return "status " + statusOf(err, callback.ErrStatus)
	case errors.Is(err, callback.ErrRedirect):
		return "redirect " + statusOf(err, callback.ErrRedirect)
	case errors.Is(err, callback.ErrBadAnswer), errors.Is(err, callback.ErrAnswerTooLarge):
		return "bad answer"
	case errors.Is(err, callback.ErrQueueFull):
		return "queue full"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, callback.ErrClosed):
		return "closed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &dns):
		return "unknown host"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	}
	return "unreachable"
}

// statusOf reads the status code that follows sentinel's text in err.
func statusOf(err, sentinel error) string {
	msg := err.Error()
	i := strings.Index(msg, sentinel.Error()+": ")
	if i < 0 {
		return "?"
	}
	rest := msg[i+len(sentinel.Error())+2:]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 {
		return "?"
	}
	return rest[:n]
}

// tally counts load mode's outcomes.
type tally struct {
	done     atomic.Int64
	outcomes [4]atomic.Int64 // allow, deny, drop, failed (before); delivered-or-queued, -, -, failed (after)

	mu       sync.Mutex // guards the fields below
	causes   map[string]int
	firstErr error
	answered []time.Duration // latencies of the calls the App answered
	failed   []time.Duration // and of those that failed
}

const failed = 3

func (t *tally) add(r callback.Response, latency time.Duration) {
	t.done.Add(1)
	if r.Err == nil {
		t.outcomes[r.Action].Add(1)
	} else {
		t.outcomes[failed].Add(1)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.Err == nil {
		t.answered = append(t.answered, latency)
		return
	}
	t.failed = append(t.failed, latency)
	t.causes[cause(r.Err)]++
	if t.firstErr == nil {
		t.firstErr = r.Err
	}
}

// loadJSON is load mode's --json output.
type loadJSON struct {
	Mode        string           `json:"mode"` // before or after
	Command     string           `json:"command"`
	Sent        int64            `json:"sent"`
	Requested   *int             `json:"requested,omitempty"` // --count; none with --duration alone
	ElapsedMS   float64          `json:"elapsed_ms"`
	PerSecond   float64          `json:"calls_per_second"`
	Concurrency int              `json:"concurrency"`
	Rate        float64          `json:"rate,omitempty"`
	Latency     *latencyJSON     `json:"latency_ms,omitempty"` // of the answered calls
	Outcomes    map[string]int64 `json:"outcomes"`
	Failures    map[string]int   `json:"failures"` // by cause
	First       string           `json:"first_failure,omitempty"`
}

type latencyJSON struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// sendLoad sends f.count callbacks (or until f.duration passes) over
// f.concurrency callers, at most f.rate a second.
func sendLoad(ctx context.Context, d *callback.Dispatcher, f *sendFlags, body []byte, dead *deadLetters, stdout, stderr io.Writer) int {
	t := &tally{causes: map[string]int{}}
	var next atomic.Int64 // the next call's number
	gen := ctx            // ends the sending, not the calls in flight
	if f.duration > 0 {
		var cancel context.CancelFunc
		gen, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	var lim *rate.Limiter
	if f.rate > 0 {
		lim = rate.NewLimiter(rate.Limit(f.rate), 1)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range f.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for gen.Err() == nil {
				if next.Add(1) > int64(f.count) {
					return
				}
				if lim != nil && lim.Wait(gen) != nil {
					return
				}
				s := time.Now()
				if f.after {
					r := callback.Response{Err: d.After(ctx, f.app, f.command, body)}
					t.add(r, time.Since(s))
					continue
				}
				r := d.Before(ctx, f.app, f.command, body)
				t.add(r, time.Since(s))
			}
		}()
	}

	total := ""
	if f.count != math.MaxInt {
		total = "/" + strconv.Itoa(f.count)
	}
	verb := "sent"
	if f.after {
		verb = "queued"
	}
	progress := func() {
		n := t.done.Load()
		perSecond := float64(n) / time.Since(start).Seconds()
		if f.after {
			fmt.Fprintf(stderr, "\r%s %d%s  %.0f/s  refused %d ", verb, n, total, perSecond, t.outcomes[failed].Load())
			return
		}
		fmt.Fprintf(stderr, "\r%s %d%s  %.0f/s  allow %d  deny %d  drop %d  failed %d ", verb, n, total, perSecond,
			t.outcomes[0].Load(), t.outcomes[1].Load(), t.outcomes[2].Load(), t.outcomes[failed].Load())
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-tick.C:
			progress()
		case <-finished:
			waiting = false
		}
	}
	progress()
	fmt.Fprintln(stderr)
	if f.after {
		return afterLoadDone(ctx, d, f, t, dead, start, stdout, stderr)
	}
	elapsed := time.Since(start)
	n := t.done.Load()
	slices.Sort(t.answered)
	slices.Sort(t.failed)
	if f.json {
		j := loadSummary(f, "before", n, elapsed, t)
		j.Outcomes = map[string]int64{"allow": t.outcomes[0].Load(), "deny": t.outcomes[1].Load(), "drop": t.outcomes[2].Load(), "failed": t.outcomes[failed].Load()}
		writeJSON(stdout, j)
	} else {
		fmt.Fprintf(stdout, "sent %d%s callbacks in %v at concurrency %d: %.0f calls/s\n",
			n, ofTotal(f), round(elapsed), f.concurrency, float64(n)/elapsed.Seconds())
		if got := t.answered; len(got) > 0 {
			fmt.Fprintf(stdout, "latency: p50 %v  p99 %v  max %v\n",
				round(percentile(got, 50)), round(percentile(got, 99)), round(got[len(got)-1]))
		} else {
			fmt.Fprintln(stdout, "latency: none answered")
		}
		fmt.Fprintf(stdout, "outcomes: allow %d  deny %d  drop %d  failed %d\n",
			t.outcomes[0].Load(), t.outcomes[1].Load(), t.outcomes[2].Load(), t.outcomes[failed].Load())
		printFailures(stdout, t.causes, t.failed, t.firstErr)
	}
	if t.outcomes[failed].Load() > 0 || (f.count != math.MaxInt && n < int64(f.count) && f.duration == 0) {
		return exitFailure
	}
	return exitAllow
}

// afterLoadDone waits for the queued after-callbacks to be delivered and
// prints the summary.
func afterLoadDone(ctx context.Context, d *callback.Dispatcher, f *sendFlags, t *tally, dead *deadLetters, start time.Time, stdout, stderr io.Writer) int {
	queued := time.Since(start)
	closeErr := d.Close(ctx) // delivers every queued event; Ctrl-C cuts it short
	elapsed := time.Since(start)
	n, causes, first := dead.get()
	accepted := t.outcomes[0].Load()
	for c, k := range t.causes { // refused by After itself (queue full)
		causes[c] += k
	}
	if first == nil {
		first = t.firstErr
	}
	delivered := accepted - int64(n)
	if f.json {
		j := loadSummary(f, "after", t.done.Load(), elapsed, t)
		j.Latency = nil
		j.Failures = causes
		j.Outcomes = map[string]int64{"queued": accepted, "delivered": delivered, "failed": int64(n) + t.outcomes[failed].Load()}
		if first != nil {
			j.First = first.Error()
		}
		writeJSON(stdout, j)
	} else {
		fmt.Fprintf(stdout, "queued %d%s after-callbacks in %v, delivered in %v by %d workers: %.0f delivered/s\n",
			t.done.Load(), ofTotal(f), round(queued), round(elapsed), f.concurrency, float64(delivered)/elapsed.Seconds())
		fmt.Fprintf(stdout, "outcomes: delivered %d  failed %d\n", delivered, int64(n)+t.outcomes[failed].Load())
		printFailures(stdout, causes, nil, first)
	}
	if closeErr != nil {
		return fail(stderr, exitFailure, "imcallback send: delivery cut short: %v", closeErr)
	}
	if n > 0 || t.outcomes[failed].Load() > 0 {
		return exitFailure
	}
	return exitAllow
}

func loadSummary(f *sendFlags, mode string, n int64, elapsed time.Duration, t *tally) loadJSON {
	j := loadJSON{Mode: mode, Command: f.command, Sent: n, ElapsedMS: ms(elapsed), PerSecond: math.Round(float64(n) / elapsed.Seconds()),
		Concurrency: f.concurrency, Rate: f.rate, Failures: t.causes}
	if f.count != math.MaxInt {
		j.Requested = &f.count
	}
	if got := t.answered; len(got) > 0 {
		j.Latency = &latencyJSON{P50: ms(percentile(got, 50)), P99: ms(percentile(got, 99)), Max: ms(got[len(got)-1])}
	}
	if t.firstErr != nil {
		j.First = t.firstErr.Error()
	}
	return j
}

// ofTotal is " of N" for a run with a count.
func ofTotal(f *sendFlags) string {
	if f.count == math.MaxInt {
		return ""
	}
	return " of " + strconv.Itoa(f.count)
}

// printFailures prints the failures by cause, most first, their latency
// and the first one's error.
func printFailures(w io.Writer, causes map[string]int, latencies []time.Duration, first error) {
	if len(causes) == 0 {
		return
	}
	keys := slices.Collect(maps.Keys(causes))
	slices.SortFunc(keys, func(a, b string) int {
		if causes[a] != causes[b] {
			return causes[b] - causes[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, causes[k])
	}
	fmt.Fprintf(w, "failures: %s\n", strings.Join(parts, "  "))
	if len(latencies) > 0 {
		fmt.Fprintf(w, "failed in: p50 %v  max %v\n", round(percentile(latencies, 50)), round(latencies[len(latencies)-1]))
	}
	if first != nil {
		fmt.Fprintf(w, "first failure: %s\n", graphic(first.Error()))
	}
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100 // ceil(len * p / 100)
	return sorted[max(i-1, 0)]
}

// round shortens d for printing.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// indent pretty-prints JSON with prefix on every line but the first; it
// returns other text unchanged.
func indent(b []byte, prefix string) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, prefix, "  "); err != nil {
		return string(b)
	}
	return out.String()
}

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
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcallback/callback"
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

With --count N or --concurrency C above 1 it is a small load generator: it
sends N before-callbacks over C concurrent callers, shows a progress line on
standard error and prints a summary: throughput, latency percentiles and
outcomes.

Examples:
  imcallback send --command message.send.before --body '{"text":"hello"}'
  echo '{"text":"hi"}' | imcallback send --protocol tencent --secret TOKEN --command C2C.CallbackBeforeSendMsg
  imcallback send --after --command message.send.after --body-file event.json
  imcallback send --count 10000 --concurrency 64 --body '{"text":"load"}'
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
	timeout                      time.Duration
	protocol                     callback.Protocol
	after                        bool
}

func runSend(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f sendFlags
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.StringVar(&f.url, "url", "http://127.0.0.1:8989/callback", "the App backend's callback `URL`")
	fs.IntVar(&f.app, "app", 10000, "the app `ID` (seed: appId; tencent: SdkAppid)")
	fs.StringVar(&f.command, "command", "", "the callback `command`; empty means message.send.before (seed) or C2C.CallbackBeforeSendMsg (tencent), or their after-commands with --after")
	fs.StringVar(&f.body, "body", "", "the event's JSON `body`")
	fs.StringVar(&f.bodyFile, "body-file", "", "read the body from `file`; - is standard input")
	fs.TextVar(&f.protocol, "protocol", callback.Seed, "the wire `protocol`: seed or tencent")
	fs.StringVar(&f.secret, "secret", os.Getenv("CALLBACK_SECRET"), "sign with this `secret`: whsec_... Standard Webhooks secret(s) for seed, the token for tencent; default $CALLBACK_SECRET")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Second, "bound of one request")
	fs.BoolVar(&f.after, "after", false, "send an after-callback instead of a before-callback")
	fs.IntVar(&f.retries, "retries", 0, "with --after: retries on transport errors, 408, 429 and 5xx")
	fs.StringVar(&f.clientIP, "client-ip", "", "tencent: the end user's `IP`, sent as ClientIP")
	fs.StringVar(&f.platform, "platform", "", "tencent: the end user's `platform`, sent as OptPlatform (Web, Android, iOS, ...)")
	fs.IntVar(&f.count, "count", 1, "load mode: how many before-callbacks to send")
	fs.IntVar(&f.concurrency, "concurrency", 1, "load mode: how many callers send at once")
	fs.Usage = usageFunc(fs, sendHead, sendTail)
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}

	load := f.count > 1 || f.concurrency > 1
	switch {
	case f.count < 1 || f.concurrency < 1:
		return fail(stderr, exitUsage, "imcallback send: --count and --concurrency must be at least 1")
	case load && f.after:
		return fail(stderr, exitUsage, "imcallback send: load mode (--count, --concurrency) sends before-callbacks only; drop --after")
	case f.body != "" && f.bodyFile != "":
		return fail(stderr, exitUsage, "imcallback send: give --body or --body-file, not both")
	case f.retries < 0:
		return fail(stderr, exitUsage, "imcallback send: --retries must not be negative")
	}
	body, err := readBody(f.body, f.bodyFile, stdin)
	if err != nil {
		return fail(stderr, exitUsage, "imcallback send: %v", err)
	}
	if f.command == "" {
		f.command = defaultCommand(f.protocol, f.after)
	}

	var dead deadLetter
	retries := f.retries
	if retries == 0 {
		retries = -1 // Config's zero means the default, 4
	}
	d, err := callback.New(callback.Config{
		URL:                 f.url,
		Protocol:            f.protocol,
		Secret:              f.secret,
		Timeout:             f.timeout,
		Retries:             retries,
		RetryWaitMin:        100 * time.Millisecond,
		RetryWaitMax:        2 * time.Second,
		Workers:             1,
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
		code := sendLoad(ctx, d, &f, body, stdout, stderr)
		_ = d.Close(context.Background())
		return code
	case f.after:
		return sendAfter(ctx, d, &f, body, &dead, stdout, stderr)
	}
	defer d.Close(context.Background())
	start := time.Now()
	var raw []byte
	r := d.Before(callback.WithAnswer(ctx, &raw), f.app, f.command, body)
	elapsed := time.Since(start)
	if r.Err != nil {
		if raw != nil { // a 2xx answer that is not the protocol's
			fmt.Fprintf(stdout, "answer:   %s\n", bytes.TrimSpace(raw))
		}
		return fail(stderr, exitFailure, "imcallback send: %s %s failed after %v: %v", f.protocol, f.command, round(elapsed), r.Err)
	}
	printResponse(stdout, r, raw, elapsed)
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
		return callback.TencentC2CAfterSendMsg
	case p == callback.Tencent:
		return callback.TencentC2CBeforeSendMsg
	case after:
		return callback.MessageSendAfter
	}
	return callback.MessageSendBefore
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
func printResponse(w io.Writer, r callback.Response, raw []byte, elapsed time.Duration) {
	fmt.Fprintf(w, "decision: %s\n", r.Action)
	fmt.Fprintf(w, "code:     %d\n", r.Code)
	fmt.Fprintf(w, "msg:      %q\n", r.Msg)
	if r.Data != nil {
		fmt.Fprintf(w, "data:     %s\n", indent(r.Data, "          "))
	}
	if raw != nil {
		fmt.Fprintf(w, "answer:   %s\n", bytes.TrimSpace(raw))
	}
	fmt.Fprintf(w, "latency:  %v\n", round(elapsed))
}

// deadLetter keeps the error of an undelivered after-callback.
type deadLetter struct {
	mu  sync.Mutex
	err error
}

func (d *deadLetter) record(_ callback.Event, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

func (d *deadLetter) get() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// sendAfter queues one after-callback and waits for its delivery.
func sendAfter(ctx context.Context, d *callback.Dispatcher, f *sendFlags, body []byte, dead *deadLetter, stdout, stderr io.Writer) int {
	start := time.Now()
	err := d.After(ctx, f.app, f.command, body)
	if err == nil {
		// Close waits for the delivery; ctx (Ctrl-C) cuts it short.
		err = d.Close(ctx)
	} else {
		_ = d.Close(context.Background())
	}
	elapsed := time.Since(start)
	if err == nil {
		err = dead.get()
	}
	if err != nil {
		return fail(stderr, exitFailure, "imcallback send: %s %s not delivered after %v: %v", f.protocol, f.command, round(elapsed), err)
	}
	fmt.Fprintf(stdout, "delivered: %s (an after-callback: its answer is not read)\nlatency:   %v\n", f.command, round(elapsed))
	return exitAllow
}

// sendLoad sends f.count before-callbacks over f.concurrency callers.
func sendLoad(ctx context.Context, d *callback.Dispatcher, f *sendFlags, body []byte, stdout, stderr io.Writer) int {
	var (
		next      atomic.Int64 // the next call's number
		done      atomic.Int64
		outcomes  [4]atomic.Int64 // allow, deny, drop, failed
		latencies = make([]time.Duration, f.count)
		firstErr  error
		errOnce   sync.Once
		wg        sync.WaitGroup
	)
	const failed = 3
	start := time.Now()
	for range f.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(f.count) {
					return
				}
				t := time.Now()
				r := d.Before(ctx, f.app, f.command, body)
				latencies[i] = time.Since(t)
				if r.Err != nil {
					outcomes[failed].Add(1)
					errOnce.Do(func() { firstErr = r.Err })
				} else {
					outcomes[r.Action].Add(1)
				}
				done.Add(1)
			}
		}()
	}

	progress := func() {
		n := done.Load()
		rate := float64(n) / time.Since(start).Seconds()
		fmt.Fprintf(stderr, "\rsent %d/%d  %.0f/s  allow %d  deny %d  drop %d  failed %d ",
			n, f.count, rate, outcomes[0].Load(), outcomes[1].Load(), outcomes[2].Load(), outcomes[failed].Load())
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
	elapsed := time.Since(start)
	progress()
	fmt.Fprintln(stderr)

	n := int(done.Load())
	got := slices.Clone(latencies[:0])
	for _, l := range latencies {
		if l > 0 { // calls never made (Ctrl-C) have none
			got = append(got, l)
		}
	}
	slices.Sort(got)
	fmt.Fprintf(stdout, "sent %d of %d callbacks in %v at concurrency %d: %.0f calls/s\n",
		n, f.count, round(elapsed), f.concurrency, float64(n)/elapsed.Seconds())
	if len(got) > 0 {
		fmt.Fprintf(stdout, "latency: p50 %v  p99 %v  max %v\n",
			round(percentile(got, 50)), round(percentile(got, 99)), round(got[len(got)-1]))
	}
	fmt.Fprintf(stdout, "outcomes: allow %d  deny %d  drop %d  failed %d\n",
		outcomes[0].Load(), outcomes[1].Load(), outcomes[2].Load(), outcomes[failed].Load())
	if firstErr != nil {
		fmt.Fprintf(stdout, "first failure: %v\n", firstErr)
	}
	if outcomes[failed].Load() > 0 || n < f.count {
		return exitFailure
	}
	return exitAllow
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

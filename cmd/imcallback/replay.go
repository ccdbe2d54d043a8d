package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/answer"
)

const replayHead = `Usage: imcallback replay [flags] FILE

Resends the callbacks in FILE (- for standard input), one JSON object a
line as imcallback listen --record or --json writes them, through the
library to --url: signed afresh with --secret (a new timestamp and
signature), with each callback's app, command, client and body, and its
webhook-id unless --new-ids. Lines that are not callbacks (rejected
requests, the Check probe) are skipped. Each is sent as a before-callback,
one attempt, and its decision printed; with --after as an after-callback,
with --retries.

With --nats, replays dead letters instead: those of --app in natsqueue's
dead-letter store that --command, --since, --until and --error select,
oldest first, at --rate per second, back into the queue under their own
webhook-ids, for the IM server's nodes to deliver (no FILE; --url and the
signing flags do not apply). --dry-run counts them and replays nothing.

Examples:
  imcallback listen --record calls.jsonl      # capture
  imcallback replay --url http://localhost:3000/callback --secret whsec_... calls.jsonl
  imcallback replay --nats nats://127.0.0.1:4222 --app 1400000001 --error "endpoint disabled" --dry-run
  imcallback replay --nats nats://127.0.0.1:4222 --app 1400000001 --since 24h --rate 20
`

const replayTail = `
Exit status: 0 when every callback was answered (or delivered); 1 when one failed or FILE cannot be read; 2 for bad flags.
`

func runReplay(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var (
		url, secret, secretEnv string
		protocol               callback.Protocol
		timeout                time.Duration
		after, newIDs, asJSON  bool
		retries                int
		dq                     deadQuery
	)
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	dq.flags(fs)
	fs.StringVar(&url, "url", "http://127.0.0.1:8989/callback", "the App backend's callback `URL`")
	fs.TextVar(&protocol, "protocol", callback.AppCommand, "the wire `protocol`: appcommand, tencent or openim; by default the recorded one")
	fs.StringVar(&secret, "secret", "", "sign with this `secret`; none: unsigned")
	fs.StringVar(&secretEnv, "secret-from-env", "", "read the secret from the environment `variable` NAME")
	fs.DurationVar(&timeout, "timeout", 2*time.Second, "bound of one request")
	fs.BoolVar(&after, "after", false, "send after-callbacks (delivered with --retries) instead of before-callbacks")
	fs.IntVar(&retries, "retries", 0, "with --after: retries on transport errors, 408, 429 and 5xx")
	fs.BoolVar(&newIDs, "new-ids", false, "give each callback a new webhook-id instead of the recorded one")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per callback")
	fs.Usage = usageFunc(fs, replayHead, replayTail)
	fs.SetOutput(io.Discard)
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return exitAllow
	case err != nil:
		return fail(stderr, exitUsage, "imcallback replay: %v (see imcallback replay --help)", err)
	case dq.nats != "":
		if fs.NArg() != 0 {
			return fail(stderr, exitUsage, "imcallback replay: --nats replays dead letters: give no FILE")
		}
		return dq.run(ctx, stdout, stderr)
	case fs.NArg() != 1:
		return fail(stderr, exitUsage, "imcallback replay: give one FILE, after the flags (see imcallback replay --help)")
	}
	protoGiven := false
	fs.Visit(func(fl *flag.Flag) { protoGiven = protoGiven || fl.Name == "protocol" })
	secret, err := secretFlag(secret, secretEnv)
	if err != nil {
		return fail(stderr, exitUsage, "imcallback replay: %v", err)
	}
	calls, err := readRecorded(fs.Arg(0), stdin)
	if err != nil {
		return fail(stderr, exitFailure, "imcallback replay: %v", err)
	}
	if len(calls) == 0 {
		return fail(stderr, exitFailure, "imcallback replay: %s holds no callback", fs.Arg(0))
	}
	if !protoGiven {
		if err := protocol.UnmarshalText([]byte(calls[0].Protocol)); err != nil {
			protocol = callback.AppCommand
		}
	}
	if retries == 0 {
		retries = -1
	}
	dead := &deadLetters{causes: map[string]int{}}
	d, err := callback.New(callback.Config{
		URL: url, Protocol: protocol, Secret: secret, Timeout: timeout,
		Retries: retries, RetryWaitMin: 100 * time.Millisecond, RetryWaitMax: 2 * time.Second,
		Workers: 1, Breaker: callback.Breaker{Disabled: true}, Health: noDisable,
		Logger: slog.New(slog.DiscardHandler), DeadLetter: dead.record,
	})
	if err != nil {
		return fail(stderr, exitUsage, "imcallback replay: %v", err)
	}
	failures := 0
	for _, c := range calls {
		if ctx.Err() != nil {
			break
		}
		cctx := ctx
		if c.ID != "" && !newIDs {
			cctx = answer.ExactID(callback.WithEventID(cctx, c.ID)) // replayed under its recorded ID
		}
		if c.ClientIP != "" || c.Platform != "" {
			cctx = callback.WithClient(cctx, c.ClientIP, c.Platform)
		}
		if after {
			if err := d.After(cctx, c.App, c.Command, c.Body); err != nil {
				failures++
				fmt.Fprintf(stdout, "%s  app %d  id %s  not queued: %s\n", safe(c.Command), c.App, safe(c.ID), graphic(err.Error()))
			}
			continue
		}
		start := time.Now()
		var raw, refusal []byte
		r := d.Before(callback.WithStatusBody(answer.With(cctx, &raw), &refusal), c.App, c.Command, c.Body)
		elapsed := time.Since(start)
		if r.Err != nil {
			failures++
		}
		if asJSON {
			fmt.Fprint(stdout, jsonLine(beforeJSON(c.Command, r, raw, refusal, elapsed)))
			continue
		}
		if r.Err != nil {
			fmt.Fprintf(stdout, "%s  app %d  id %s  FAILED after %v: %s\n", safe(c.Command), c.App, safe(c.ID), round(elapsed), graphic(r.Err.Error()))
			if len(refusal) > 0 {
				fmt.Fprintf(stdout, "  body: %s\n", safeQuote(refusal))
			}
			continue
		}
		fmt.Fprintf(stdout, "%s  app %d  id %s  %s %d %s  %v\n", safe(c.Command), c.App, safe(c.ID), r.Action, r.Code, safeQuote([]byte(r.Msg)), round(elapsed))
	}
	closeErr := d.Close(ctx) // with --after: waits for the deliveries
	if after {
		n, _, first := dead.get()
		failures += n
		fmt.Fprintf(stdout, "replayed %d after-callbacks: delivered %d, failed %d\n", len(calls), len(calls)-failures, failures)
		if first != nil {
			fmt.Fprintf(stdout, "first failure: %s\n", graphic(first.Error()))
		}
	} else if !asJSON {
		fmt.Fprintf(stdout, "replayed %d callbacks: answered %d, failed %d\n", len(calls), len(calls)-failures, failures)
	}
	if closeErr != nil || failures > 0 || ctx.Err() != nil {
		return exitFailure
	}
	return exitAllow
}

// readRecorded reads the callbacks of a --record or --json file.
func readRecorded(path string, stdin io.Reader) ([]callbackJSON, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var calls []callbackJSON
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 32<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var c callbackJSON
		if err := json.Unmarshal(line, &c); err != nil {
			return nil, fmt.Errorf("%s line %d: not a recorded callback: %v", path, n, err)
		}
		if c.Command == "" || c.Rejected != "" || c.Command == callback.CheckCommand || len(c.Body) == 0 {
			continue
		}
		calls = append(calls, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return calls, nil
}

// safeQuote quotes untrusted text for the terminal.
func safeQuote(b []byte) string {
	return strconv.QuoteToGraphic(string(b))
}

// noDisable is the CLI's endpoint health policy: a tool that fires
// callbacks at a backend reports every answer, 410 Gone included, rather
// than stop sending (see callback.HealthPolicy).
var noDisable = callback.HealthPolicy{DisableAfter: -1}

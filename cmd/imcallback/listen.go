package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/wire"
	"github.com/imcallback/callback/receiver"
)

const listenHead = `Usage: imcallback listen [flags]

Runs an App backend that prints every callback it receives (time, app,
command, webhook-id, signature status, the answer it gave and the body,
pretty-printed; headers and query with --verbose) and answers by rules:
--deny-pattern, --drop-pattern, --rewrite or a --rules file. With no rule
matching, it allows. Point an IM server (or imcallback send) at the URL it
prints. Ctrl-C stops it.

With --secret it verifies signatures as the receiver package does and
answers 401 to a request that fails; without, it checks nothing.

With --forward-to URL it verifies and prints each callback, then forwards
it through the library (re-signed with --forward-secret, by default the
--secret, keeping its webhook-id) to your own App backend under
development and answers with that backend's decision: the Stripe CLI's
"listen --forward-to" workflow. If that backend fails, the callback is
answered 500, as a failed App backend's would be.

Forwarding signs only what --secret verified: --forward-secret without
--secret would sign whatever anyone sends to the listener (a web page the
developer visits can POST to 127.0.0.1), and the App backend would take
it as the IM server's. So listen refuses to start that way unless
--unauthenticated says the listener accepts callbacks from anyone.

--json prints one JSON object per callback instead (for jq); --quiet
prints only a line a second counting the callbacks, for load; --record
FILE appends every verified callback to FILE as such JSON lines, for
imcallback replay.

Examples:
  imcallback listen
  imcallback listen --forward-to http://localhost:3000/im/callback --record calls.jsonl
  imcallback listen --json | jq 'select(.answer.action != "allow")'
  imcallback listen --secret whsec_... --deny-pattern '(?i)spam' --rewrite '(?i)darn=****'
  imcallback listen --protocol tencent --secret TOKEN --drop-pattern casino --rules rules.json
`

const listenTail = `
AppCommand and OpenIM cannot express a drop: there a drop is answered as a
deny, code 403, msg "dropped". Tencent drops with ErrorCode 2.

` + rulesHelp + `
Exit status: 0 when stopped by Ctrl-C; 1 if it cannot listen or serve; 2 for bad flags.
`

// listenFlags are listen's settings.
type listenFlags struct {
	addr, secret, rulesFile  string
	forwardTo, forwardSecret string
	record                   string
	forwardTimeout           time.Duration
	protocol                 callback.Protocol
	verbose, json, quiet     bool
	unauthenticated          bool
	flagRules
}

func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f listenFlags
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8989", "`address` to listen on (port 0: any free port)")
	fs.TextVar(&f.protocol, "protocol", callback.AppCommand, "the wire `protocol`: appcommand, tencent or openim")
	fs.StringVar(&f.secret, "secret", os.Getenv("CALLBACK_SECRET"), "verify signatures with this `secret`: whsec_... Standard Webhooks secret(s) for appcommand and openim, token(s) for tencent, space-separated; default $CALLBACK_SECRET")
	fs.BoolVar(&f.verbose, "verbose", false, "print each callback's headers and query too")
	fs.Func("deny-pattern", "deny callbacks whose body matches this Go regular `expression` (repeatable)", appendTo(&f.deny))
	fs.IntVar(&f.denyCode, "deny-code", 0, "the `code` of --deny-pattern's denials; 0 means 403 (appcommand, openim) or 120001 (tencent)")
	fs.StringVar(&f.denyMsg, "deny-msg", "denied by imcallback listen", "the `message` of --deny-pattern's denials")
	fs.Func("drop-pattern", "drop callbacks whose body matches this Go regular `expression` (repeatable)", appendTo(&f.drop))
	fs.Func("rewrite", "rewrite `PATTERN=REPLACEMENT` in the body's strings and answer the result (repeatable)", appendTo(&f.rewrite))
	fs.StringVar(&f.rulesFile, "rules", "", "read rules from this JSON `file` (see below)")
	fs.StringVar(&f.forwardTo, "forward-to", "", "forward each verified callback to this App backend `URL` and answer with its decision")
	fs.StringVar(&f.forwardSecret, "forward-secret", "", "sign forwarded callbacks with this `secret`; empty means --secret's")
	fs.DurationVar(&f.forwardTimeout, "forward-timeout", 10*time.Second, "bound of one forwarded callback")
	fs.BoolVar(&f.unauthenticated, "unauthenticated", false, "accept unsigned callbacks from anyone, and forward them signed with --forward-secret: without --secret, any web page can make listen sign a callback")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per callback")
	fs.BoolVar(&f.quiet, "quiet", false, "print only a summary line a second")
	fs.StringVar(&f.record, "record", "", "append every verified callback to this `file`, one JSON object a line")
	fs.Usage = usageFunc(fs, listenHead, listenTail)
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}

	var rs rules
	if f.rulesFile != "" {
		var err error
		if rs, err = loadRules(f.rulesFile); err != nil {
			return fail(stderr, exitUsage, "imcallback listen: --rules: %v", err)
		}
	}
	more, err := f.flagRules.rules()
	if err != nil {
		return fail(stderr, exitUsage, "imcallback listen: %v", err)
	}
	rs = append(rs, more...)
	if err := rs.compile(f.protocol); err != nil {
		return fail(stderr, exitUsage, "imcallback listen: %v", err)
	}
	switch {
	case f.forwardTo != "" && len(rs) > 0:
		return fail(stderr, exitUsage, "imcallback listen: --forward-to answers with your App backend's decisions: drop the rules")
	case f.json && f.quiet:
		return fail(stderr, exitUsage, "imcallback listen: give --json or --quiet, not both")
	case f.unauthenticated && f.secret != "":
		return fail(stderr, exitUsage, "imcallback listen: give --secret or --unauthenticated, not both")
	case f.forwardTo != "" && f.forwardSecret != "" && f.secret == "" && !f.unauthenticated:
		return fail(stderr, exitUsage, "imcallback listen: --forward-secret without --secret would sign any request anyone sends (a web page can POST to this port): give --secret to verify callbacks first, or --unauthenticated to accept that")
	}

	l := &listener{proto: f.protocol, rules: rs, signed: f.secret != "", verbose: f.verbose, json: f.json, quiet: f.quiet, out: stdout, paint: newPainter(stdout)}
	if f.forwardTo != "" {
		secret := f.forwardSecret
		if secret == "" {
			secret = f.secret
		}
		fwd, err := newForwarder(f.forwardTo, f.protocol, secret, f.forwardTimeout)
		if err != nil {
			return fail(stderr, exitUsage, "imcallback listen: %v", err)
		}
		defer fwd.close(stderr)
		l.fwd = fwd
	}
	if f.record != "" {
		rec, err := newRecorder(f.record)
		if err != nil {
			return fail(stderr, exitFailure, "imcallback listen: %v", err)
		}
		l.rec = rec
	}
	l.recv, err = receiver.New(receiver.Config{
		Protocol: f.protocol,
		Secret:   f.secret,
		Default:  l.decide,
		OnReject: l.reject,
		Logger:   slog.New(slog.DiscardHandler), // rejections are printed by reject
	})
	if err != nil {
		return fail(stderr, exitUsage, "imcallback listen: %v", err)
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		if l.rec != nil {
			_ = l.rec.close()
		}
		return fail(stderr, exitFailure, "imcallback listen: %v", err)
	}
	srv := &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	check := "signatures not checked (no --secret)"
	switch {
	case l.signed:
		check = "signatures checked"
	case l.fwd != nil && f.forwardSecret != "":
		check = "signatures not checked (--unauthenticated): anyone's request is forwarded signed"
	}
	answers := fmt.Sprintf("%d rules", len(rs))
	if l.fwd != nil {
		answers = "forwarding to " + strings.SplitN(redactURL(f.forwardTo), "?", 2)[0]
	}
	banner := fmt.Sprintf("imcallback listen: %s App backend on http://%s/callback, %s, %s; Ctrl-C stops\n", f.protocol, ln.Addr(), check, answers)
	if f.json {
		fmt.Fprint(stderr, banner) // stdout is for the JSON lines
	} else {
		l.printf("%s\n", banner)
	}
	var summary sync.WaitGroup
	sumCtx, stopSummary := context.WithCancel(ctx)
	if f.quiet {
		summary.Add(1)
		go func() { defer summary.Done(); l.n.summarise(sumCtx, l.printf) }()
	}

	select {
	case <-ctx.Done():
	case err = <-served:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdown))
	stopSummary()
	summary.Wait()
	if l.rec != nil {
		err = errors.Join(err, l.rec.close())
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fail(stderr, exitFailure, "imcallback listen: %v", err)
	}
	return exitAllow
}

// appendTo returns a flag.Func that appends each value to list.
func appendTo(list *[]string) func(string) error {
	return func(v string) error {
		*list = append(*list, v)
		return nil
	}
}

// listener is listen's App backend: a receiver.Handler that prints.
type listener struct {
	proto         callback.Protocol
	rules         rules
	signed        bool
	verbose, json bool
	quiet         bool
	recv          *receiver.Handler
	fwd           *forwarder // with --forward-to
	rec           *recorder  // with --record
	n             counters

	mu    sync.Mutex // serialises writes to out
	out   io.Writer
	paint painter // colours for a terminal
}

func (l *listener) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.out, format, args...)
}

// ServeHTTP lets the receiver verify and answer the request. A request it
// refuses is printed by reject, one it accepts by decide; the probe of
// Dispatcher.Check, which the receiver answers by itself, is printed here.
func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	l.recv.ServeHTTP(rw, r)
	if rw.status >= 300 || l.quiet {
		return
	}
	app, command, id := l.address(r)
	if command != callback.CheckCommand {
		return // decide printed it
	}
	if l.json {
		c := callbackJSON{Time: at, Protocol: l.proto.String(), Command: command, ID: id,
			Status: rw.status, Answer: &answerJSON{Action: "allow", Rule: "probe of Dispatcher.Check"}}
		c.App, _ = strconv.Atoi(app)
		l.printf("%s", jsonLine(c))
		return
	}
	l.printf("%s  %s  app %s  id %s\n  probe of Dispatcher.Check (imcallback doctor): answered allow\n\n",
		at.Format("15:04:05.000"), safe(command), safe(app), safe(id))
}

// address reads r's app, command and event ID as the protocol addresses
// them, unverified: for printing a request the receiver answered by itself
// or refused.
func (l *listener) address(r *http.Request) (app, command, id string) {
	rc, err := l.proto.Format().Receiver("", 0)
	if err != nil {
		return "", "", ""
	}
	c, _ := rc.Read(r, nil, time.Now())
	switch { // the raw value, even one that is not a number
	case l.proto == callback.AppCommand:
		app = r.URL.Query().Get(wire.ParamAppID)
	case l.proto == callback.Tencent:
		app = r.URL.Query().Get(wire.ParamSdkAppID)
	case c.AppID != 0:
		app = strconv.Itoa(c.AppID)
	}
	return app, c.Command, c.EventID
}

// reject is the receiver's OnReject: it counts and prints a request the
// receiver refuses before any decision, before the answer is written.
func (l *listener) reject(r *http.Request, status int, reason error) {
	at := time.Now()
	l.n.rejected.Add(1)
	if l.quiet {
		return
	}
	app, command, id := l.address(r)
	if l.json {
		c := callbackJSON{Time: at, Protocol: l.proto.String(), Command: command, ID: id,
			Status: status, Rejected: reason.Error()}
		c.App, _ = strconv.Atoi(app)
		if status == http.StatusUnauthorized {
			c.Signature = "invalid"
		}
		l.printf("%s", jsonLine(c))
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  app %s  id %s\n", at.Format("15:04:05.000"), safe(command), safe(app), safe(id))
	what := "rejected"
	if status == http.StatusUnauthorized {
		what = "signature INVALID"
	}
	fmt.Fprintf(&b, "  %s: answered %d %s\n", what, status, printable(reason.Error()))
	if l.verbose {
		l.writeHeaders(&b, r)
	}
	b.WriteString("\n")
	l.printf("%s", b.String())
}

// decide is the receiver's handler for every command: it is reached only
// by requests that passed verification.
func (l *listener) decide(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
	at := time.Now()
	var (
		dec     receiver.Decision
		why     string
		fwdErr  error
		fwdTook time.Duration
	)
	if l.fwd != nil {
		dec, fwdTook, fwdErr = l.fwd.forward(ctx, req)
	} else {
		dec, why = l.rules.decide(l.proto, req.Command, req.Body)
	}
	l.n.add(dec, fwdErr)
	if l.rec != nil || l.json {
		c := &callbackJSON{Time: at, Protocol: l.proto.String(), App: req.AppID, Command: req.Command, ID: req.ID,
			ClientIP: req.ClientIP, Platform: req.Platform, Body: req.Body}
		if l.rec != nil {
			l.rec.write(c)
		}
		if l.json {
			c.Signature = "not checked"
			if l.signed {
				c.Signature = "valid"
			}
			if fwdErr == nil {
				c.Answer = toAnswerJSON(dec, why)
			}
			if l.fwd != nil {
				c.Forward = &forwardJSON{LatencyMS: ms(fwdTook)}
				if fwdErr != nil {
					c.Forward.Error = fwdErr.Error()
				}
			}
			l.printf("%s", jsonLine(c))
		}
	}
	if l.quiet || l.json {
		return dec, fwdErr
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  app %d  id %s\n", at.Format("15:04:05.000"), safe(req.Command), req.AppID, safe(req.ID))
	sig := "not checked (no --secret)"
	if l.signed {
		sig = "valid"
	}
	fmt.Fprintf(&b, "  signature: %s\n", sig)
	if req.ClientIP != "" || req.Platform != "" {
		fmt.Fprintf(&b, "  client:    %s %s\n", safe(req.ClientIP), safe(req.Platform))
	}
	switch {
	case fwdErr != nil:
		fmt.Fprintf(&b, "  forward:   %s after %v: %s\n  answer:    500 (your App backend did not answer)", l.paint.paint(red, "FAILED"), round(fwdTook), graphic(fwdErr.Error()))
	case l.fwd != nil:
		fmt.Fprintf(&b, "  forward:   answered in %v\n  answer:    %s", round(fwdTook), l.decision(dec))
	default:
		fmt.Fprintf(&b, "  answer:    %s", l.decision(dec))
	}
	if why != "" {
		fmt.Fprintf(&b, "  (%s)", why)
	}
	b.WriteString("\n")
	if l.verbose {
		l.writeHeaders(&b, &http.Request{Header: req.Header, URL: &url.URL{RawQuery: req.Query.Encode()}})
	}
	fmt.Fprintf(&b, "  body:      %s\n\n", graphicJSON(indent(req.Body, "             ")))
	l.printf("%s", b.String())
	return dec, fwdErr
}

// decision describes dec, coloured on a terminal.
func (l *listener) decision(dec receiver.Decision) string {
	return l.paint.paint(actionColour(dec.Action), describeDecision(l.proto, dec))
}

// describeDecision says what dec is answered as.
func describeDecision(p callback.Protocol, dec receiver.Decision) string {
	switch {
	case dec.Action == callback.Deny:
		return fmt.Sprintf("deny %d %q", dec.Code, dec.Msg)
	case dec.Action == callback.Drop && p != callback.Tencent:
		return `drop (` + p.String() + ` has none: answered as deny 403 "dropped")`
	case dec.Data != nil:
		return "rewrite " + string(dec.Data)
	}
	return dec.Action.String()
}

// writeHeaders lists r's headers (and query, when r has a URL) sorted.
func (l *listener) writeHeaders(b *strings.Builder, r *http.Request) {
	if r.URL != nil {
		fmt.Fprintf(b, "  query:     %s\n", safe(r.URL.RawQuery))
	}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b.WriteString("  headers:\n")
	for _, k := range keys {
		for _, v := range r.Header[k] {
			fmt.Fprintf(b, "    %s: %s\n", safe(k), printable(v))
		}
	}
}

// statusWriter passes a response through and keeps its status.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// Unwrap lets the receiver's http.ResponseController reach the connection
// (its ReadTimeout sets a read deadline).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/imcallback/callback"
)

const doctorHead = `Usage: imcallback doctor [flags]

Checks that an App backend can be reached and answers callbacks as the
library expects, the way an IM server would check it at start-up: it sends
the probe callback ` + callback.CheckCommand + ` (Dispatcher.Check) through the library,
signed with --secret, and prints each finding. A Before callback fails
open, so a wrong URL, port, protocol or secret would otherwise only show
as error logs while every event is let through unasked.

An App backend built on the receiver package (or imcallback listen)
answers the probe with an allow by itself; another one should answer it as
any command it does not know, with an allow or a deny.

Examples:
  imcallback doctor
  imcallback doctor --url https://app.example/callback --secret whsec_...
  imcallback doctor --protocol tencent --secret TOKEN --app 1400000000
`

const doctorTail = `
Exit status: 0 when every check passed; 1 when one failed; 2 for bad flags.
`

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		url, secret, secretEnv string
		app                    int
		timeout                time.Duration
		protocol               callback.Protocol
	)
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.StringVar(&url, "url", "http://127.0.0.1:8989/callback", "the App backend's callback `URL`")
	fs.IntVar(&app, "app", 10000, "the app `ID` the probe is sent for")
	fs.TextVar(&protocol, "protocol", callback.AppCommand, "the wire `protocol`: appcommand, tencent or openim")
	fs.StringVar(&secret, "secret", "", "sign with this `secret`: whsec_... for seed, the token for tencent; none: unsigned")
	fs.StringVar(&secretEnv, "secret-from-env", "", "read the secret from the environment `variable` NAME")
	fs.DurationVar(&timeout, "timeout", 2*time.Second, "bound of the probe")
	fs.Usage = usageFunc(fs, doctorHead, doctorTail)
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	secret, err := secretFlag(secret, secretEnv)
	if err != nil {
		return fail(stderr, exitUsage, "imcallback doctor: %v", err)
	}
	d, err := callback.New(callback.Config{
		URL:      url,
		Protocol: protocol,
		Secret:   secret,
		Timeout:  timeout,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return fail(stderr, exitUsage, "imcallback doctor: %v", err)
	}
	defer closeDispatcher(stderr, "imcallback doctor", d)
	ep, _ := d.Endpoint(ctx, app)
	p := newPainter(stdout)
	signed := "unsigned"
	if secret != "" {
		signed = "signed"
	}
	fmt.Fprintf(stdout, "imcallback doctor: %s callback %s to %s for app %d, %s\n", protocol, callback.CheckCommand, strings.SplitN(redactURL(ep.URL), "?", 2)[0], app, signed)

	start := time.Now()
	err = d.Check(ctx, app)
	elapsed := round(time.Since(start))
	if err == nil {
		p.finding(true, "reached: answered 2xx in %v", elapsed)
		if secret != "" {
			p.finding(true, "signature accepted")
		} else {
			p.note("accepted unsigned (no --secret): this App backend does not verify signatures")
		}
		p.finding(true, "answer in the %s protocol", protocol)
		return exitAllow
	}
	if ctx.Err() != nil {
		return fail(stderr, exitFailure, "imcallback doctor: interrupted: %v", err)
	}
	var ce *callback.CheckError
	if !errors.As(err, &ce) {
		p.finding(false, "%s", graphic(err.Error()))
		return exitFailure
	}
	for _, line := range diagnose(ce, protocol, secret != "", elapsed) {
		p.finding(line.ok, "%s", line.text)
	}
	if len(ce.Body) > 0 {
		fmt.Fprintf(stdout, "        answer body: %s\n", strconv.QuoteToGraphic(string(ce.Body)))
	}
	return exitFailure
}

// finding is one line of doctor's report.
type finding struct {
	ok   bool
	text string
}

// diagnose turns a failed check into findings, the failing one with a hint.
func diagnose(ce *callback.CheckError, p callback.Protocol, signed bool, elapsed time.Duration) []finding {
	var out []finding
	switch {
	case errors.Is(ce, callback.ErrResolve):
		return []finding{{false, fmt.Sprintf("the app's endpoint cannot be resolved: %s", graphic(ce.Err.Error()))}}
	case errors.Is(ce, callback.ErrUnreachable) && ce.Status != 0:
		return []finding{{false, fmt.Sprintf("the answer (%d) broke off: %v\n        hint: the App backend closed the connection before the whole answer (a crash, or a proxy in between)", ce.Status, unwrapAll(ce.Err))}}
	case errors.Is(ce, callback.ErrUnreachable):
		return []finding{{false, fmt.Sprintf("unreachable: %v\n        hint: is the App backend running, on this host and port? (imcallback listen runs one)", unwrapAll(ce.Err))}}
	case errors.Is(ce, callback.ErrTimeout):
		return []finding{{false, fmt.Sprintf("no answer within the timeout (%v): %v\n        hint: the App backend accepted the connection but did not answer; raise --timeout if it is just slow", elapsed, unwrapAll(ce.Err))}}
	}
	out = append(out, finding{true, fmt.Sprintf("reached: answered %d in %v", ce.Status, elapsed)})
	switch {
	case errors.Is(ce, callback.ErrSignatureRefused) && signed:
		out = append(out, finding{false, "signature refused (401)\n        hint: --secret is not the App backend's secret (or the clocks differ by minutes)"})
	case errors.Is(ce, callback.ErrSignatureRefused):
		out = append(out, finding{false, "signature required (401): the App backend verifies signatures\n        hint: give its secret with --secret or --secret-from-env"})
	case errors.Is(ce, callback.ErrRedirect):
		out = append(out, finding{false, fmt.Sprintf("redirect (%d): callbacks never follow redirects\n        hint: use the URL it redirects to", ce.Status)})
	case errors.Is(ce, callback.ErrStatus) && ce.Status == 400:
		out = append(out, finding{false, fmt.Sprintf("refused as a bad request (400)\n        hint: is the App backend on the %s protocol? try --protocol %s", p, other(p))})
	case errors.Is(ce, callback.ErrStatus) && ce.Status == 404:
		out = append(out, finding{false, "not found (404)\n        hint: another server is on this port, or the path is wrong"})
	case errors.Is(ce, callback.ErrStatus):
		out = append(out, finding{false, fmt.Sprintf("non-2xx status %d: a Before callback would fail open", ce.Status)})
	case errors.Is(ce, callback.ErrBadAnswer), errors.Is(ce, callback.ErrAnswerTooLarge):
		out = append(out, finding{false, fmt.Sprintf("the answer is not in the %s protocol: %v\n        hint: another server is on this port, or the App backend speaks --protocol %s", p, unwrapAll(ce.Err), other(p))})
	default:
		out = append(out, finding{false, unwrapAll(ce.Err)})
	}
	return out
}

// other names the built-in protocols that p is not.
func other(p callback.Protocol) string {
	var others []string
	for _, q := range []callback.Protocol{callback.AppCommand, callback.Tencent, callback.OpenIM} {
		if q != p {
			others = append(others, q.String())
		}
	}
	return strings.Join(others, " or ")
}

// unwrapAll is err's message without the Check sentinel it starts with,
// which the finding says in words already, its characters graphic (a TLS
// error quotes the App backend's certificate).
func unwrapAll(err error) string {
	s := err.Error()
	for _, e := range []error{callback.ErrUnreachable, callback.ErrTimeout, callback.ErrSignatureRefused} {
		s = strings.TrimPrefix(s, e.Error())
	}
	return graphic(strings.TrimLeft(s, ": "))
}

// secretFlag returns --secret, or with --secret-from-env NAME the value of
// $NAME; giving both, or naming an empty variable, is a usage error.
func secretFlag(secret, env string) (string, error) {
	switch {
	case env == "":
		return secret, nil
	case secret != "":
		return "", errors.New("give --secret or --secret-from-env, not both")
	}
	v, ok := os.LookupEnv(env)
	if !ok || v == "" {
		return "", fmt.Errorf("--secret-from-env: $%s is not set", env)
	}
	return v, nil
}

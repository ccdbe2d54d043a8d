// Command imcallback is the developer's tool for imcallback callbacks, on
// both sides of the wire:
//
//	imcallback listen   # be an App backend: print each callback, answer by rules
//	imcallback send     # be the IM server: fire callbacks at an App backend
//	imcallback replay   # resend callbacks that listen --record saved, or natsqueue's dead letters
//	imcallback apps     # manage per-app endpoints in a database
//	imcallback doctor   # check that an App backend answers, before trusting fail-open
//
// Install it from a clone of the repository with
//
//	go install ./cmd/imcallback
//
// and run "imcallback listen --help" or "imcallback send --help" for the
// flags of each.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses. send documents its own in its --help.
const (
	exitAllow   = 0 // send: the App allowed; listen: stopped cleanly
	exitFailure = 1 // the callback failed, or the command could not run
	exitUsage   = 2 // bad flags or arguments
	exitDeny    = 3 // send: the App denied
	exitDrop    = 4 // send: the App dropped
)

const usage = `imcallback: a tool for IM callbacks, on both sides of the wire.

Usage:
  imcallback listen [flags]   run an App backend that prints every callback and answers by rules
  imcallback send [flags]     fire a callback (or many) at an App backend through the library
  imcallback replay [flags] FILE
                              resend callbacks that listen --record saved, re-signed
  imcallback replay --nats URL --app ID [flags]
                              replay an app's dead letters from natsqueue, by query and at a rate
  imcallback apps list|set|delete|disable|enable [flags]
                              manage per-app callback endpoints in a database (sqlapps)
  imcallback doctor [flags]   check that an App backend is reachable and accepts the signature
  imcallback secret           print a new random whsec_ secret
  imcallback --version        print the version

Run "imcallback COMMAND --help" for the flags of each.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status. listen
// serves until ctx ends.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "listen":
		return runListen(ctx, args[1:], stdout, stderr)
	case "send":
		return runSend(ctx, args[1:], stdin, stdout, stderr)
	case "apps":
		return runApps(ctx, args[1:], stdout, stderr)
	case "doctor":
		return runDoctor(ctx, args[1:], stdout, stderr)
	case "replay":
		return runReplay(ctx, args[1:], stdin, stdout, stderr)
	case "secret":
		return runSecret(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version())
		return exitAllow
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitAllow
	}
	fmt.Fprintf(stderr, "imcallback: unknown command %q (want listen, send, replay, apps, doctor or secret; see imcallback --help)\n", args[0])
	return exitUsage
}

// parse parses args with fs. Errors are one line on stderr; --help prints
// the usage on stdout. It returns -1 to go on, or the exit status.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	fs.SetOutput(io.Discard) // parse errors are reported in one line below
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return exitAllow
	case err != nil:
		return fail(stderr, exitUsage, "imcallback %s: %v (see imcallback %s --help)", fs.Name(), err, fs.Name())
	case fs.NArg() > 0:
		return fail(stderr, exitUsage, "imcallback %s: unexpected argument %q (see imcallback %s --help)", fs.Name(), fs.Arg(0), fs.Name())
	}
	return -1
}

// fail prints one line on stderr and returns code.
func fail(stderr io.Writer, code int, format string, args ...any) int {
	fmt.Fprintln(stderr, graphic(fmt.Sprintf(format, args...))) // errors may quote an App backend, a database, a peer
	return code
}

// usageFunc returns a FlagSet's Usage: text before the flags, the flags,
// then text after them.
func usageFunc(fs *flag.FlagSet, head, tail string) func() {
	return func() {
		out := fs.Output()
		fmt.Fprint(out, head)
		fmt.Fprintln(out, "\nFlags:")
		fs.PrintDefaults()
		fmt.Fprint(out, tail)
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// deadQuery is imcallback replay --nats: a bulk replay of dead letters
// from natsqueue's store (natsqueue.Admin.ReplayMatching).
type deadQuery struct {
	nats, stream, deadStream string
	app                      int
	command, errText         string
	since, until             string
	rate                     float64
	limit, show              int
	dryRun                   bool
	now                      func() time.Time // a test seam
}

// dialTimeout bounds connecting to NATS and binding the streams.
const dialTimeout = 10 * time.Second

func (q *deadQuery) flags(fs *flag.FlagSet) {
	fs.StringVar(&q.nats, "nats", "", "replay dead letters from natsqueue's store on this NATS server `URL` (comma-separated for a cluster)")
	fs.StringVar(&q.stream, "stream", "", "with --nats: the work `stream` (natsqueue.Options.Stream); default CALLBACK_AFTER")
	fs.StringVar(&q.deadStream, "dead-letter-stream", "", "with --nats: the dead-letter `stream` (natsqueue.Options.DeadLetterStream); default CALLBACK_DEAD")
	fs.IntVar(&q.app, "app", 0, "with --nats: the `app` ID whose dead letters are replayed (required)")
	fs.StringVar(&q.command, "command", "", "with --nats: only this `command`'s dead letters")
	fs.StringVar(&q.since, "since", "", "with --nats: only those dead-lettered from this `time` (RFC 3339, or a duration ago: 24h)")
	fs.StringVar(&q.until, "until", "", "with --nats: only those dead-lettered before this `time` (RFC 3339, or a duration ago)")
	fs.StringVar(&q.errText, "error", "", "with --nats: only those whose error contains this `text` (\"endpoint disabled\", \"status: 503\")")
	fs.Float64Var(&q.rate, "rate", 50, "with --nats: replay at most this many per `second`")
	fs.IntVar(&q.limit, "limit", 0, "with --nats: replay at most this many; 0: all")
	fs.IntVar(&q.show, "show", 20, "with --nats --dry-run: list at most this many of those selected")
	fs.BoolVar(&q.dryRun, "dry-run", false, "with --nats: count (and list, see --show) what would be replayed; replay nothing")
}

// query returns the callback.ReplayQuery of the flags.
func (q *deadQuery) query() (callback.ReplayQuery, error) {
	rq := callback.ReplayQuery{AppID: q.app, Command: q.command, ErrorContains: q.errText, Rate: q.rate, Limit: q.limit, DryRun: q.dryRun}
	if q.app == 0 {
		return rq, errors.New("--nats needs --app")
	}
	if q.rate <= 0 {
		return rq, errors.New("--rate must be positive")
	}
	if q.limit < 0 || q.show < 0 {
		return rq, errors.New("--limit and --show must not be negative")
	}
	var err error
	if rq.Since, err = q.timeFlag("since", q.since); err != nil {
		return rq, err
	}
	if rq.Until, err = q.timeFlag("until", q.until); err != nil {
		return rq, err
	}
	return rq, nil
}

// timeFlag reads a --since or --until value: RFC 3339, or a duration ago.
func (q *deadQuery) timeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time or a positive duration ago", name, v)
	}
	now := time.Now
	if q.now != nil {
		now = q.now
	}
	return now().Add(-d), nil
}

// run replays (or counts) the dead letters the flags select.
func (q *deadQuery) run(ctx context.Context, stdout, stderr io.Writer) int {
	rq, err := q.query()
	if err != nil {
		return fail(stderr, exitUsage, "imcallback replay: %v", err)
	}
	nc, err := nats.Connect(q.nats, nats.Name("imcallback replay"), nats.Timeout(dialTimeout))
	if err != nil {
		return fail(stderr, exitFailure, "imcallback replay: connecting to %s: %s", safe(q.nats), graphic(err.Error()))
	}
	defer nc.Close()
	sctx, cancel := context.WithTimeout(ctx, dialTimeout)
	a, err := natsqueue.NewAdmin(sctx, nc, natsqueue.Options{Stream: q.stream, DeadLetterStream: q.deadStream})
	cancel()
	if err != nil {
		return fail(stderr, exitFailure, "imcallback replay: %s", graphic(err.Error()))
	}
	if rq.DryRun && q.show > 0 {
		if err := q.list(ctx, a, rq, stdout); err != nil {
			return fail(stderr, exitFailure, "imcallback replay: listing dead letters: %s", graphic(err.Error()))
		}
	}
	res, err := a.ReplayMatching(ctx, rq)
	if rq.DryRun {
		fmt.Fprintf(stdout, "dry run: %d dead letters of app %d would be replayed\n", res.Matched, rq.AppID)
	} else {
		fmt.Fprintf(stdout, "replayed %d of %d dead letters of app %d\n", res.Replayed, res.Matched, rq.AppID)
	}
	if err != nil {
		return fail(stderr, exitFailure, "imcallback replay: %s", graphic(err.Error()))
	}
	return exitAllow
}

// list prints the first q.show dead letters rq selects, one a line; every
// field but the app and the time came from the store and is quoted.
func (q *deadQuery) list(ctx context.Context, a *natsqueue.Admin, rq callback.ReplayQuery, stdout io.Writer) error {
	dq := callback.DeadLetterQuery{ByApp: true, AppID: rq.AppID, Limit: 1000}
	shown := 0
	for {
		page, err := a.ListDeadLetters(ctx, dq)
		if err != nil || len(page) == 0 {
			return err
		}
		for _, dl := range page {
			dq.AfterSeq = dl.Seq
			if !rq.Matches(dl) {
				continue
			}
			fmt.Fprintf(stdout, "%s  app %d  id %s  %s  attempts %d  %s\n",
				dl.Time.UTC().Format(time.RFC3339), dl.AppID, safe(dl.ID), safe(dl.Command), dl.Attempts, safe(strings.TrimSpace(dl.Error)))
			shown++
			if shown >= q.show || (rq.Limit > 0 && shown >= rq.Limit) {
				return nil
			}
		}
	}
}

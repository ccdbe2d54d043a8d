package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imcallback/callback"
)

// defaultReplayRate is ReplayQuery.Rate's default, per second.
const defaultReplayRate = 50

// ReplayMatching replays the dead letters of one app that rq selects
// (callback.ReplayQuery: a command, a time range, an error's text),
// oldest first, at most rq.Rate per second, each as ReplayOne does: back
// into the work stream under its own webhook-id, with a fresh schedule of
// attempts. With rq.DryRun it only counts them. It returns what it did
// when ctx ends or an error stops it, with the error; a dead letter
// replayed or removed meanwhile by someone else is skipped.
func (q *Queue) ReplayMatching(ctx context.Context, rq callback.ReplayQuery) (callback.ReplayResult, error) {
	var res callback.ReplayResult
	if rq.Rate < 0 || rq.Limit < 0 {
		return res, fmt.Errorf("%w: ReplayQuery's Rate and Limit must not be negative", ErrInvalidOptions)
	}
	rate := rq.Rate
	if rate == 0 {
		rate = defaultReplayRate
	}
	every := time.Duration(float64(time.Second) / rate)
	var next time.Time
	dq := callback.DeadLetterQuery{ByApp: true, AppID: rq.AppID, Limit: 1000}
	for {
		page, err := q.ListDeadLetters(ctx, dq)
		if err != nil {
			return res, err
		}
		if len(page) == 0 {
			return res, nil
		}
		for _, dl := range page {
			dq.AfterSeq = dl.Seq
			if !rq.Matches(dl) {
				continue
			}
			res.Matched++
			if !rq.DryRun {
				if err := pace(ctx, &next, every); err != nil {
					return res, err
				}
				switch err := q.replaySeq(ctx, dl.Seq); {
				case errors.Is(err, ErrNotFound):
					res.Matched--
				case err != nil:
					return res, err
				default:
					res.Replayed++
				}
			}
			if rq.Limit > 0 && res.Matched >= rq.Limit {
				return res, nil
			}
		}
	}
}

// pace waits until *next, then sets it every later.
func pace(ctx context.Context, next *time.Time, every time.Duration) error {
	if wait := time.Until(*next); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	*next = time.Now().Add(every)
	return nil
}

// replaySeq replays the dead letter stored at seq, or returns an error
// wrapping ErrNotFound if it is no longer stored.
func (q *Queue) replaySeq(ctx context.Context, seq uint64) error {
	raw, err := q.dead.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%w: dead letter %d", ErrNotFound, seq)
	}
	if err != nil {
		return fmt.Errorf("natsqueue: dead letter %d: %w", seq, err)
	}
	return q.replay(ctx, raw)
}

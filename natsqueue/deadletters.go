package natsqueue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imcallback/callback"
)

// ErrNotFound is wrapped by ReplayOne's error for an event with no dead
// letter stored: never dead-lettered, already replayed, dropped by
// DeadLetterMaxAge, or dead-lettered by a version before ReplayOne (whose
// dead letters Replay replays). It is callback.ErrNotFound.
var ErrNotFound = callback.ErrNotFound

// idToken returns the subject token that names the dead letter of the
// webhook-id id: a hash, as an ID may hold '.', '*' and '>'.
func idToken(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:8])
}

// deadSubject is the subject of ev's dead letter: DeadLetterSubject, the
// app, and the token of its webhook-id, so ReplayOne finds it directly.
// Version 0.1.0 stored dead letters on DeadLetterSubject.app alone.
func (q *Queue) deadSubject(ev callback.Event) string {
	return q.o.DeadLetterSubject + "." + strconv.Itoa(ev.AppID) + "." + idToken(ev.ID)
}

// msgID returns the Nats-Msg-Id of ev's message with suffix: its app and
// its webhook-id, since a webhook-id names an event only within its app
// (two apps' message keys may be the same). The app comes first and has
// no ':', so two events' IDs differ.
func msgID(ev callback.Event, suffix string) string {
	return strconv.Itoa(ev.AppID) + ":" + ev.ID + suffix
}

// ListDeadLetters returns the dead letters that dq selects, oldest first,
// with at most dq.Limit of them (0 means 100; at most 1000). Continue a
// listing with dq.AfterSeq set to the last one's Seq. A page costs three
// requests to the server whatever its size (an ordered consumer of the
// dead-letter stream is made, fetched from and deleted); with dq.EventID
// and dq.ByApp set, one lookup, which finds the event's last dead letter.
// dq.EventID alone lists that webhook-id's dead letters in every app. A
// server that goes quiet for a second in the middle of a page ends the
// page there; ctx ending first is an error.
//
// Dead letters stored by version 0.1.0 are listed, by app too, but not
// found by dq.EventID.
func (q *Queue) ListDeadLetters(ctx context.Context, dq callback.DeadLetterQuery) ([]callback.DeadLetter, error) {
	if dq.EventID != "" && dq.ByApp {
		raw, err := q.findDead(ctx, dq.AppID, dq.EventID)
		if errors.Is(err, ErrNotFound) || (err == nil && raw.Sequence <= dq.AfterSeq) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		dl, err := deadLetterOf(raw, dq.Bodies)
		if err != nil {
			return nil, err
		}
		return []callback.DeadLetter{dl}, nil
	}
	filters := []string{q.o.DeadLetterSubject + ".>"}
	var match func(*jetstream.RawStreamMsg) bool
	switch {
	case dq.EventID != "":
		filters = []string{q.o.DeadLetterSubject + ".*." + idToken(dq.EventID)}
		match = func(raw *jetstream.RawStreamMsg) bool { return raw.Header.Get(hdrID) == dq.EventID }
	case dq.ByApp:
		app := q.o.DeadLetterSubject + "." + strconv.Itoa(dq.AppID)
		filters = []string{app + ".>", app} // app: 0.1.0's dead letters
	}
	return q.listDead(ctx, filters, match, dq)
}

// listDead returns a page of the dead letters on filters that match
// selects (nil: all).
func (q *Queue) listDead(ctx context.Context, filters []string, match func(*jetstream.RawStreamMsg) bool, dq callback.DeadLetterQuery) ([]callback.DeadLetter, error) {
	limit := dq.Size()
	// One ordered consumer reads the page in one fetch where GetMsg would
	// make a request per dead letter.
	c, err := q.dead.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       dq.AfterSeq + 1,
		InactiveThreshold: listerIdle,
	})
	if err != nil {
		return nil, fmt.Errorf("natsqueue: dead letters: %w", err)
	}
	defer q.dropLister(ctx, c)
	var out []callback.DeadLetter
	for len(out) < limit {
		batch, err := c.FetchNoWait(limit - len(out))
		if err != nil {
			return out, fmt.Errorf("natsqueue: dead letters: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			raw := &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: meta.Sequence.Stream,
				Header: m.Headers(), Data: m.Data(), Time: meta.Timestamp}
			if match != nil && !match(raw) {
				continue // another webhook-id of the same hash
			}
			dl, err := deadLetterOf(raw, dq.Bodies)
			if err != nil {
				continue // not an event: Replay reports it
			}
			out = append(out, dl)
		}
		if err := batch.Error(); err != nil {
			return out, fmt.Errorf("natsqueue: dead letters: %w", err)
		}
		if got == 0 {
			break // none left
		}
	}
	if err := ctx.Err(); err != nil {
		// The fetch itself takes no ctx (it ends a second after the last
		// message came): a page cut short by ctx is an error, not the end.
		return out, fmt.Errorf("natsqueue: dead letters: %w", err)
	}
	return out, nil
}

// listerIdle is how long the server keeps a listing's consumer that
// dropLister could not delete.
const listerIdle = 30 * time.Second

// dropLister deletes the server's consumer of a listing, bounded by
// listerDropWait even when ctx has ended.
func (q *Queue) dropLister(ctx context.Context, c jetstream.Consumer) {
	info := c.CachedInfo()
	if info == nil {
		return // no fetch made one
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listerDropWait)
	defer cancel()
	_ = q.dead.DeleteConsumer(ctx, info.Name) // else it expires after listerIdle
}

// listerDropWait bounds deleting a listing's consumer.
const listerDropWait = 5 * time.Second

// deadLetterOf reads a dead-letter message.
func deadLetterOf(raw *jetstream.RawStreamMsg, body bool) (callback.DeadLetter, error) {
	ev, err := decodeEvent(raw.Header, raw.Data)
	if err != nil {
		return callback.DeadLetter{}, err
	}
	n, _ := strconv.Atoi(raw.Header.Get(hdrAttempts))
	dl := callback.DeadLetter{
		Seq: raw.Sequence, ID: ev.ID, AppID: ev.AppID, Command: ev.Command,
		Error: raw.Header.Get(hdrError), Time: raw.Time, Queued: ev.Queued, Attempts: n,
	}
	if body && json.Valid(raw.Data) {
		dl.Body = json.RawMessage(raw.Data)
	}
	return dl, nil
}

// findDead returns the last dead letter of app's event id, or an error
// wrapping ErrNotFound.
func (q *Queue) findDead(ctx context.Context, app int, id string) (*jetstream.RawStreamMsg, error) {
	a := strconv.Itoa(app)
	raw, err := q.dead.GetLastMsgForSubject(ctx, q.o.DeadLetterSubject+"."+a+"."+idToken(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && (raw.Header.Get(hdrID) != id || raw.Header.Get(hdrAppID) != a)) {
		return nil, fmt.Errorf("%w: no dead letter of that event", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("natsqueue: dead letter: %w", err)
	}
	return raw, nil
}

// ReplayOne moves the dead letter of app appID's event id (its webhook-id)
// back into the work stream, with its webhook-id and a fresh schedule of
// attempts, as Replay does for all of them. It returns an error wrapping
// ErrNotFound when no dead letter of that event is stored (another app's
// event of the same webhook-id is another event): replaying it a second
// time finds none, so an event is replayed once per time it was
// dead-lettered. Two calls at once for the same dead letter store it in
// the work stream once (same Nats-Msg-Id within the stream's duplicate
// window), and one of them may then report ErrNotFound or an error
// deleting the dead letter.
func (q *Queue) ReplayOne(ctx context.Context, appID int, id string) error {
	raw, err := q.findDead(ctx, appID, id)
	if err != nil {
		return err
	}
	return q.replay(ctx, raw)
}

// replay moves the dead letter raw back into the work stream.
func (q *Queue) replay(ctx context.Context, raw *jetstream.RawStreamMsg) error {
	ev, err := decodeEvent(raw.Header, raw.Data)
	if err != nil {
		return fmt.Errorf("natsqueue: replay of dead letter %d: %w", raw.Sequence, err)
	}
	m := eventMsg(q.o.Subject, ev)
	// A new message ID (the webhook-id is in the header and stays): the
	// original's may still be in the duplicate window, and replaying this
	// dead letter twice stores it once.
	id := msgID(ev, ".replay."+strconv.FormatUint(raw.Sequence, 10))
	if _, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(q.o.Stream)); err != nil {
		return fmt.Errorf("%w: replay: %w", ErrPublish, err)
	}
	traceReplay(ctx, &ev, raw.Sequence)
	if err := q.dead.DeleteMsg(ctx, raw.Sequence); err != nil {
		return fmt.Errorf("natsqueue: replay: deleting dead letter %d: %w", raw.Sequence, err)
	}
	return nil
}

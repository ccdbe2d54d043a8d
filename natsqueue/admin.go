package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imcallback/callback"
)

// Admin reaches the dead-letter store of the Queues that use the same
// Options, from a process that delivers nothing: an operator's tool such
// as imcallback replay. Unlike New it creates no stream and no consumer
// and pulls no event, so it never holds events the nodes should deliver.
// It owns no goroutine; it needs no Close.
type Admin struct {
	q *Queue
}

// NewAdmin returns an Admin on the JetStream of nc for the streams that o
// names (Stream, Subject, DeadLetterStream, DeadLetterSubject; the other
// fields do not matter). A subject left empty is read from its stream
// when the stream has one subject "prefix.>", so naming the streams is
// enough. Both streams must exist: the error wraps ErrNotFound if one
// does not. The caller keeps owning nc.
func NewAdmin(ctx context.Context, nc *nats.Conn, o Options) (*Admin, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: no connection", ErrInvalidOptions)
	}
	given := [2]bool{o.Subject != "", o.DeadLetterSubject != ""}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsqueue: %w", err)
	}
	q := &Queue{js: js}
	for i, s := range []struct {
		name    string
		dst     *jetstream.Stream
		subject *string
	}{{o.Stream, &q.work, &o.Subject}, {o.DeadLetterStream, &q.dead, &o.DeadLetterSubject}} {
		st, err := js.Stream(ctx, s.name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w: stream %s", ErrNotFound, s.name)
		}
		if err != nil {
			return nil, fmt.Errorf("natsqueue: stream %s: %w", s.name, err)
		}
		*s.dst = st
		if subj := st.CachedInfo().Config.Subjects; !given[i] && len(subj) == 1 && strings.HasSuffix(subj[0], ".>") {
			*s.subject = strings.TrimSuffix(subj[0], ".>")
		}
	}
	q.o, q.nc = o, nc
	return &Admin{q: q}, nil
}

// ListDeadLetters is Queue.ListDeadLetters.
func (a *Admin) ListDeadLetters(ctx context.Context, dq callback.DeadLetterQuery) ([]callback.DeadLetter, error) {
	return a.q.ListDeadLetters(ctx, dq)
}

// ReplayOne is Queue.ReplayOne.
func (a *Admin) ReplayOne(ctx context.Context, appID int, id string) error {
	return a.q.ReplayOne(ctx, appID, id)
}

// ReplayMatching is Queue.ReplayMatching.
func (a *Admin) ReplayMatching(ctx context.Context, rq callback.ReplayQuery) (callback.ReplayResult, error) {
	return a.q.ReplayMatching(ctx, rq)
}

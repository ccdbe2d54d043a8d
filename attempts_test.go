package callback_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

func TestAttemptLogBefore(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{"code":200,"msg":"success"}`))
	d, err := callback.New(callback.Config{URL: b.URL + "/cb?token=secret", Logger: discardLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })

	ctx := callback.WithEventID(context.Background(), "ev-1")
	resp := d.Before(ctx, 7, "message.send.before", []byte(`{"text":"hi"}`))
	require.NoError(t, resp.Err)

	got := d.Attempts(callback.AttemptQuery{EventID: "ev-1"})
	require.Len(t, got, 1)
	a := got[0]
	require.Equal(t, uint64(1), a.Seq)
	require.Equal(t, callback.KindBefore, a.Kind)
	require.Equal(t, 7, a.AppID)
	require.Equal(t, "message.send.before", a.Command)
	require.Equal(t, 1, a.Attempt)
	require.Equal(t, callback.OutcomeAllowed, a.Outcome)
	require.Equal(t, 200, a.Status)
	require.Positive(t, a.Latency)
	require.Empty(t, a.Error)
	require.Nil(t, a.Body, "no body without AttemptBodies")
	require.NotContains(t, a.Endpoint, "secret", "the query is hashed")
}

// logSettings are the attempt log settings the benchmarks compare: off
// (the baseline) and on at its default size.
var logSettings = []struct {
	name string
	size int
}{{"log=off", -1}, {"log=on", 0}}

// BenchmarkBeforeAttemptLog measures Before against a loopback App backend
// with the attempt log off and on: the difference is the log's cost per
// call, within the network's noise.
func BenchmarkBeforeAttemptLog(b *testing.B) {
	srv := newBenchBackend(b)
	for _, s := range logSettings {
		b.Run(s.name, func(b *testing.B) {
			d := newBenchDispatcher(b, callback.Config{URL: srv.URL + "/callback", AttemptLog: s.size})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r := d.Before(ctx, 10000, "message.send.before", benchBody); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}

// BenchmarkBeforeBreakerOpenAttemptLog measures Before while the breaker
// is open (no network: the call fails open at once and is recorded), with
// the attempt log off and on: the log's cost per Before, undiluted.
func BenchmarkBeforeBreakerOpenAttemptLog(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	for _, s := range logSettings {
		b.Run(s.name, func(b *testing.B) {
			d := newBenchDispatcher(b, callback.Config{URL: srv.URL, AttemptLog: s.size, Breaker: callback.Breaker{Cooldown: time.Hour}})
			ctx := context.Background()
			for range 5 {
				d.Before(ctx, 10000, "message.send.before", benchBody)
			}
			b.ReportAllocs()
			for b.Loop() {
				if r := d.Before(ctx, 10000, "message.send.before", benchBody); !errors.Is(r.Err, callback.ErrBreakerOpen) {
					b.Fatalf("got %v, want ErrBreakerOpen", r.Err)
				}
			}
		})
	}
}

// outcomes returns the outcome, attempt number and status of each record.
func outcomes(as []callback.Attempt) []string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s#%d:%d", a.Outcome, a.Attempt, a.Status))
	}
	return out
}

func TestAttemptLogBeforeOutcomes(t *testing.T) {
	var answer atomic.Value
	answer.Store(`{"code":200,"msg":"success"}`)
	var status atomic.Int64
	status.Store(http.StatusOK)
	b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = io.WriteString(w, answer.Load().(string))
	})
	d, err := callback.New(callback.Config{
		URL: b.URL, Logger: discardLogger(),
		Commands: map[string]callback.Rule{"group.member.add.before": {FailClosed: true}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	ctx := context.Background()

	d.Before(ctx, 1, "message.send.before", []byte(`{}`))
	answer.Store(`{"code":403,"msg":"no"}`)
	d.Before(ctx, 1, "message.send.before", []byte(`{}`))
	status.Store(http.StatusServiceUnavailable)
	d.Before(ctx, 1, "message.send.before", []byte(`{}`))
	d.Before(ctx, 1, "group.member.add.before", []byte(`{}`))
	d.Before(ctx, 1, "message.send.before", []byte(`not json`)) // never sent

	got := d.Attempts(callback.AttemptQuery{})
	require.Equal(t, []string{"allowed#1:200", "denied#1:200", "failed-open#1:503", "failed-closed#1:503", "failed-open#1:0"}, outcomes(got))
	assert.Contains(t, got[2].Error, "non-2xx status: 503")
	assert.Equal(t, callback.ErrInvalidBody.Error(), got[4].Error)
	assert.Equal(t, 4, b.count(), "the invalid body is not sent")
}

func TestAttemptLogAfterRetriedThenDelivered(t *testing.T) {
	var calls atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	d, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger(), RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	require.NoError(t, d.After(context.Background(), 0, "message.send.after", []byte(`{"n":1}`)))
	q := callback.AttemptQuery{Kind: callback.KindAfter, Outcome: callback.OutcomeDelivered}
	waitUntil(t, "the delivery", func() bool { return len(d.Attempts(q)) == 1 })

	id := d.Attempts(q)[0].EventID
	require.NotEmpty(t, id)
	story := d.Attempts(callback.AttemptQuery{EventID: id})
	slices.SortFunc(story, func(a, b callback.Attempt) int { return a.Time.Compare(b.Time) })
	require.Equal(t, []string{"queued#0:0", "retrying#1:503", "delivered#2:200"}, outcomes(story))
	for _, a := range story {
		assert.Equal(t, id, a.EventID)
		assert.Equal(t, 0, a.AppID)
		assert.Equal(t, callback.KindAfter, a.Kind)
	}
	assert.Positive(t, story[1].Latency)
	assert.Contains(t, story[1].Error, "503")
	assert.Empty(t, story[2].Error)
	assert.Equal(t, b.requests()[0].Header.Get("Webhook-Id"), id, "the log's webhook-id is the one sent")
}

func TestAttemptLogAfterDeadLettered(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusBadRequest, `{}`))
	dead := make(chan callback.Event, 1)
	d, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger(), DeadLetter: func(ev callback.Event, _ error) { dead <- ev }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	require.NoError(t, d.After(context.Background(), 3, "friend.add.after", []byte(`{}`)))
	var ev callback.Event
	select {
	case ev = <-dead:
	case <-time.After(20 * time.Second):
		t.Fatal("no dead letter")
	}
	waitUntil(t, "two records", func() bool { return len(d.Attempts(callback.AttemptQuery{EventID: ev.ID})) == 2 })
	story := d.Attempts(callback.AttemptQuery{EventID: ev.ID})
	slices.SortFunc(story, func(a, b callback.Attempt) int { return a.Time.Compare(b.Time) })
	require.Equal(t, []string{"queued#0:0", "dead-lettered#1:400"}, outcomes(story))
}

// queueOfOne returns a Dispatcher with one worker and a memory queue of
// one, whose App backend holds every attempt until release gives it a
// value (never, for a nil release) or the attempt ends; Close at cleanup
// ends the held attempt.
func queueOfOne(t *testing.T, release <-chan struct{}) (*callback.Dispatcher, *backend) {
	t.Helper()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	d, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger(), Workers: 1, QueueSize: 1})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // end the held attempt
		_ = d.Close(ctx)
	})
	return d, b
}

func TestAttemptLogAfterRejected(t *testing.T) {
	d, b := queueOfOne(t, nil)
	ctx := context.Background()
	require.NoError(t, d.After(ctx, 1, "message.send.after", []byte(`{}`)))
	waitUntil(t, "the worker to hold the first event", func() bool { return b.count() == 1 })
	require.NoError(t, d.After(ctx, 1, "message.send.after", []byte(`{}`)))
	err := d.After(callback.WithEventID(ctx, "full-1"), 1, "message.send.after", []byte(`{}`))
	require.ErrorIs(t, err, callback.ErrQueueFull)
	got := d.Attempts(callback.AttemptQuery{EventID: "full-1"})
	require.Equal(t, []string{"rejected#0:0"}, outcomes(got))
	assert.Equal(t, callback.ErrQueueFull.Error(), got[0].Error)
	queued := d.Attempts(callback.AttemptQuery{Outcome: callback.OutcomeQueued})
	require.Len(t, queued, 2)
	assert.NotEqual(t, queued[0].EventID, queued[1].EventID, "memory events get their IDs")
}

// TestAttemptLogQueueFullOncePerBurst: of a burst of ErrQueueFull
// refusals the attempt log records the first only, Stats counts them
// all, and an accepted event ends the burst, so the next refusal is
// recorded again.
func TestAttemptLogQueueFullOncePerBurst(t *testing.T) {
	release := make(chan struct{}, 1)
	d, b := queueOfOne(t, release)
	ctx := context.Background()
	after := func(id string) error {
		return d.After(callback.WithEventID(ctx, id), 1, "message.send.after", []byte(`{}`))
	}
	require.NoError(t, after("held-1"))
	waitUntil(t, "the worker to hold the first event", func() bool { return b.count() == 1 })
	require.NoError(t, after("queued-2"))
	for i := range 5 {
		require.ErrorIs(t, after(fmt.Sprintf("full-%d", i+1)), callback.ErrQueueFull)
	}
	release <- struct{}{} // held-1 answered: the worker takes queued-2
	waitUntil(t, "the worker to hold the second event", func() bool { return b.count() == 2 })
	require.NoError(t, after("queued-3"), "a slot freed")
	for i := range 2 {
		require.ErrorIs(t, after(fmt.Sprintf("full-%d", i+6)), callback.ErrQueueFull)
	}
	var ids []string
	for _, a := range d.Attempts(callback.AttemptQuery{Outcome: callback.OutcomeRejected}) {
		ids = append(ids, a.EventID)
		assert.Equal(t, callback.ErrQueueFull.Error(), a.Error)
	}
	assert.Equal(t, []string{"full-1", "full-6"}, ids, "the first refusal of each burst")
	assert.Equal(t, uint64(7), d.Stats().Total.RejectedFull, "every refusal counted")
}

// TestAttemptLogAfterRefusedEarly: an After refused before its event is
// queued (invalid body, empty command, unknown app, ended ctx, closed) is
// in the log as rejected with its error, under the ID given with
// WithEventID or none, so an operator looking for an event that never
// arrived finds why.
func TestAttemptLogAfterRefusedEarly(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{}`))
	apps := callback.ResolverFunc(func(_ context.Context, app int) (callback.Endpoint, error) {
		if app == 404 {
			return callback.Endpoint{}, callback.ErrUnknownApp
		}
		return callback.Endpoint{URL: b.URL}, nil
	})
	d, err := callback.New(callback.Config{Resolver: apps, Logger: discardLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	ended, cancel := context.WithCancel(context.Background())
	cancel()

	cases := []struct {
		id      string
		ctx     context.Context
		app     int
		command string
		body    string
		err     error
	}{
		{"bad-body", context.Background(), 1, "message.send.after", `{"text":`, callback.ErrInvalidBody},
		{"no-command", context.Background(), 1, "", `{}`, callback.ErrInvalidCommand},
		{"unknown-app", context.Background(), 404, "message.send.after", `{}`, callback.ErrUnknownApp},
		{"ended-ctx", ended, 1, "message.send.after", `{}`, context.Canceled},
	}
	for _, c := range cases {
		err := d.After(callback.WithEventID(c.ctx, c.id), c.app, c.command, []byte(c.body))
		require.ErrorIs(t, err, c.err, c.id)
		got := d.Attempts(callback.AttemptQuery{EventID: c.id})
		require.Equal(t, []string{"rejected#0:0"}, outcomes(got), c.id)
		assert.Equal(t, c.app, got[0].AppID, c.id)
		assert.Equal(t, callback.KindAfter, got[0].Kind, c.id)
		assert.Contains(t, got[0].Error, err.Error(), c.id)
	}
	assert.Zero(t, b.count(), "nothing was sent")

	// Without WithEventID the refusal has no ID, not a made-up one.
	require.ErrorIs(t, d.After(context.Background(), 1, "message.send.after", []byte(`nope`)), callback.ErrInvalidBody)
	got := d.Attempts(callback.AttemptQuery{ByApp: true, AppID: 1, Outcome: callback.OutcomeRejected})
	require.Len(t, got, 4) // bad-body, no-command, ended-ctx and this one
	assert.Empty(t, got[len(got)-1].EventID)

	require.NoError(t, d.Close(context.Background()))
	require.ErrorIs(t, d.After(callback.WithEventID(context.Background(), "closed"), 1, "message.send.after", []byte(`{}`)), callback.ErrClosed)
	got = d.Attempts(callback.AttemptQuery{EventID: "closed"})
	require.Equal(t, []string{"rejected#0:0"}, outcomes(got))
	assert.NotEmpty(t, got[0].Endpoint, "resolved before the refusal")
}

func TestAttemptLogQuery(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{"code":200,"msg":"success"}`))
	d, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger(), AttemptLog: 4})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	ctx := context.Background()
	for i := range 10 {
		d.Before(ctx, i%2, "message.send.before", []byte(`{}`))
	}
	all := d.Attempts(callback.AttemptQuery{})
	require.Len(t, all, 4, "the ring keeps the last 4")
	for i, a := range all {
		assert.Equal(t, uint64(7+i), a.Seq)
	}
	app0 := d.Attempts(callback.AttemptQuery{ByApp: true, AppID: 0})
	require.Len(t, app0, 2, "app 0 is an app")
	for _, a := range app0 {
		assert.Equal(t, 0, a.AppID)
	}
	assert.Len(t, d.Attempts(callback.AttemptQuery{AfterSeq: 8}), 2)
	newest := d.Attempts(callback.AttemptQuery{Limit: 1})
	require.Len(t, newest, 1)
	assert.Equal(t, uint64(10), newest[0].Seq, "Limit keeps the newest")
	assert.Empty(t, d.Attempts(callback.AttemptQuery{Kind: callback.KindAfter}))
	assert.Empty(t, d.Attempts(callback.AttemptQuery{AfterSeq: 10}))

	off, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger(), AttemptLog: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = off.Close(context.Background()) })
	off.Before(ctx, 1, "message.send.before", []byte(`{}`))
	assert.Nil(t, off.Attempts(callback.AttemptQuery{}), "a negative AttemptLog turns it off")
}

func TestAttemptLogBodies(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{"code":200,"msg":"success"}`))
	d, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger(), AttemptBodies: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	body := []byte(`{"text":"hello"}`)
	d.Before(context.Background(), 1, "message.send.before", body)
	copy(body, `{"text":"HELLO"}`) // the caller reuses its buffer
	got := d.Attempts(callback.AttemptQuery{})
	require.Len(t, got, 1)
	assert.JSONEq(t, `{"text":"hello"}`, string(got[0].Body), "the log keeps its own copy")
}

func TestAttemptLogRedacts(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{}`))
	url := strings.Replace(b.URL, "http://", "http://user:pass@", 1) + "/cb?token=secret"
	b.Close() // every call fails with a transport error naming the URL
	d, err := callback.New(callback.Config{URL: url, Logger: discardLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	d.Before(context.Background(), 1, "message.send.before", []byte(`{"text":"private"}`))
	got := d.Attempts(callback.AttemptQuery{})
	require.Len(t, got, 1)
	require.Equal(t, callback.OutcomeFailedOpen, got[0].Outcome)
	require.NotEmpty(t, got[0].Error)
	for _, s := range []string{got[0].Error, got[0].Endpoint} {
		assert.NotContains(t, s, "secret")
		assert.NotContains(t, s, "pass")
		assert.NotContains(t, s, "private")
	}
}

// TestAttemptLogConcurrent writes a small ring from many goroutines while
// others read it; the race detector checks the ring, and every record read
// is whole.
func TestAttemptLogConcurrent(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{"code":200,"msg":"success"}`))
	d, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger(), AttemptLog: 8})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				ctx := callback.WithEventID(context.Background(), fmt.Sprintf("g%d-%d", g, i))
				d.Before(ctx, g, "message.send.before", []byte(`{}`))
			}
		})
	}
	var reads sync.WaitGroup
	reads.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, a := range d.Attempts(callback.AttemptQuery{}) {
				if a.EventID != fmt.Sprintf("g%d-%s", a.AppID, strings.SplitN(a.EventID, "-", 2)[1]) {
					t.Errorf("record %d is torn: app %d, id %s", a.Seq, a.AppID, a.EventID)
				}
			}
		}
	})
	wg.Wait()
	close(stop)
	reads.Wait()
	got := d.Attempts(callback.AttemptQuery{})
	require.Len(t, got, 8)
	assert.Equal(t, uint64(200), got[7].Seq)
}

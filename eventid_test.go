package callback_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// TestWithEventID: an ID the caller gives is the webhook-id of After's
// delivery and of Before's call, and signs it; a bad one is refused.
func TestWithEventID(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{"code":200,"msg":"ok"}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	ctx := callback.WithEventID(context.Background(), "im-msg-42_7")

	require.NoError(t, d.After(ctx, 1, "message.send.after", []byte(`{"n":1}`)))
	resp := d.Before(ctx, 1, "message.send.before", []byte(`{"n":2}`))
	require.NoError(t, resp.Err)
	waitUntil(t, "both calls received", func() bool { return b.count() == 2 })
	// One ID serves both: the After sends it, the Before with
	// BeforeIDSuffix, so that an App that remembers IDs sees two events.
	ids := map[string]string{}
	for _, r := range b.requests() {
		ids[url.Values(r.Query).Get("command")] = r.Header.Get("Webhook-Id")
	}
	assert.Equal(t, map[string]string{"message.send.after": "im-msg-42_7", "message.send.before": "im-msg-42_7/before"}, ids)

	for _, bad := range []string{"", "with space", "new\nline", strings.Repeat("x", 257), "caf\u00e9"} {
		ctx := callback.WithEventID(context.Background(), bad)
		err := d.After(ctx, 1, "message.send.after", []byte(`{}`))
		assert.True(t, errors.Is(err, callback.ErrInvalidEventID), "After with ID %q: got %v, want ErrInvalidEventID", bad, err)
		resp := d.Before(ctx, 1, "message.send.before", []byte(`{}`))
		assert.True(t, errors.Is(resp.Err, callback.ErrInvalidEventID), "Before with ID %q: got %v, want ErrInvalidEventID", bad, resp.Err)
		assert.True(t, resp.OK(), "Before with a bad ID fails open")
	}
	assert.Equal(t, 2, b.count(), "a bad ID must send nothing")
}

// TestCloseDrainLimit: Close with a ctx that has no deadline is bounded by
// DrainTimeout when the App backend is down: it returns soon after it,
// with every queued event dead-lettered as ErrClosed.
func TestCloseDrainLimit(t *testing.T) {
	const events = 20
	url := "http://" + refusedAddr(t) + "/callback"
	var dead deadLetters
	d, err := callback.New(callback.Config{
		URL: url, DrainTimeout: 500 * time.Millisecond, DeadLetter: dead.hook,
		Logger: discardLogger(), Workers: 2,
	})
	require.NoError(t, err)
	for n := range events {
		require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)), "After %d", n)
	}
	start := time.Now()
	err = d.Close(context.Background())
	took := time.Since(start)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "Close: got %v, want one wrapping context.DeadlineExceeded", err)
	assert.Less(t, took, 10*time.Second, "Close took %v with a 500 ms drain limit", took)
	evs, errs := dead.snapshot()
	assert.Len(t, evs, events, "got %d dead letters, want every event", len(evs))
	for i, err := range errs {
		assert.True(t, errors.Is(err, callback.ErrClosed), "dead letter %d: got %v, want ErrClosed", i, err)
	}
}

// TestCloseDrainDefault: the drain limit is 30 s unless set; a negative one
// means none, and a ctx deadline wins over it.
func TestCloseDrainDefault(t *testing.T) {
	url := "http://" + refusedAddr(t) + "/callback"
	d, err := callback.New(callback.Config{URL: url, DrainTimeout: time.Hour, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, d.After(context.Background(), 1, "message.send.after", []byte(`{}`)))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = d.Close(ctx)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "Close: got %v", err)
	assert.Less(t, time.Since(start), 10*time.Second, "the ctx deadline must end Close before the hour-long drain limit")
	assert.Equal(t, 30*time.Second, callback.DrainTimeoutOf(callback.Config{URL: url}))
}

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	b := newBackend(t, answerJSON(http.StatusOK, `{}`))
	addr := b.Listener.Addr().String()
	b.Close()
	return addr
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !waitFor(10*time.Second, cond) {
		require.FailNow(t, "timed out waiting for "+what)
	}
}

// readmeRetryAfter is the README's retry of After with the caller's event
// ID, compiled here so that it cannot drift.
func readmeRetryAfter(ctx context.Context, d *callback.Dispatcher, appID int, msgKey string, body []byte) (err error) {
	ctx = callback.WithEventID(ctx, msgKey) // printable ASCII, at most 256 bytes
	for try := 0; try < 3; try++ {
		if err = d.After(ctx, appID, "message.send.after", body); err == nil {
			break // stored once, delivered under msgKey, however many tries it took
		}
	}
	return err
}

var _ = readmeRetryAfter

package callback_test

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// autoID is the shape of the IDs a Dispatcher makes itself.
var autoID = regexp.MustCompile(`^msg_[A-Z2-7]{26}$`)

// TestAutoIDsUnpredictable: tenant 1 sees the webhook-ids of its own two
// events, between which tenant 2 made 37. The IDs are of the documented
// shape, all differ, and share nothing but "msg_" beyond chance: no
// counter in them to predict the next ID from or to count tenant 2's
// events by.
func TestAutoIDsUnpredictable(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{"code":200,"msg":"ok"}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	ctx := context.Background()
	require.NoError(t, d.Before(ctx, 1, "message.send.before", []byte(`{}`)).Err)
	for range 37 {
		require.NoError(t, d.Before(ctx, 2, "message.send.before", []byte(`{}`)).Err)
	}
	require.NoError(t, d.Before(ctx, 1, "message.send.before", []byte(`{}`)).Err)
	require.NoError(t, d.After(ctx, 1, "message.send.after", []byte(`{}`)))
	waitUntil(t, "the After", func() bool { return b.count() == 40 })

	seen := map[string]bool{}
	var ids []string
	for _, r := range b.requests() {
		id := r.Header.Get("Webhook-Id")
		require.Regexp(t, autoID, id)
		require.False(t, seen[id], "ID %s made twice", id)
		seen[id] = true
		ids = append(ids, id)
	}
	// Two random 26-character IDs share their first 6 characters by a
	// chance of 2^-30; 780 pairs make it one in a million.
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			n := 0
			for n < len(a) && a[n] == b[n] {
				n++
			}
			assert.Less(t, n, len("msg_")+6, "%s and %s share a prefix", a, b)
		}
	}
}

// TestWithEventIDAutoShapeRefused: an ID of the Dispatcher's own shape
// cannot be given with WithEventID, so a tenant's message key can never
// claim an ID the Dispatcher makes for another event; other IDs that
// begin with msg_ can.
func TestWithEventIDAutoShapeRefused(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{"code":200,"msg":"ok"}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	require.NoError(t, d.Before(context.Background(), 1, "message.send.before", []byte(`{}`)).Err)
	made := b.requests()[0].Header.Get("Webhook-Id")

	for _, id := range []string{made, "msg_" + strings.Repeat("A", 26), "msg_" + strings.Repeat("7", 26)} {
		ctx := callback.WithEventID(context.Background(), id)
		err := d.After(ctx, 2, "message.send.after", []byte(`{}`))
		assert.True(t, errors.Is(err, callback.ErrInvalidEventID), "After with ID %q: got %v, want ErrInvalidEventID", id, err)
		resp := d.Before(ctx, 2, "message.send.before", []byte(`{}`))
		assert.True(t, errors.Is(resp.Err, callback.ErrInvalidEventID), "Before with ID %q: got %v, want ErrInvalidEventID", id, resp.Err)
	}
	for _, r := range b.requests()[1:] {
		assert.NotEqual(t, made, r.Header.Get("Webhook-Id"), "an ID is never sent twice")
	}

	for _, id := range []string{"msg_1001", "msg_" + strings.Repeat("A", 25), "msg_" + strings.Repeat("a", 26), "msg_" + strings.Repeat("A", 27)} {
		ctx := callback.WithEventID(context.Background(), id)
		require.NoError(t, d.After(ctx, 2, "message.send.after", []byte(`{}`)), "After with ID %q", id)
	}
}

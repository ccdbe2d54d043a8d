package natsqueue_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// TestForDispatcherKeepsQueueMethodsAway: a *Queue offers only what an
// operator calls; Put, Get and Stop are on ForDispatcher's callback.Queue,
// whose Close closes the Queue, so the Dispatcher owns it.
func TestForDispatcherKeepsQueueMethodsAway(t *testing.T) {
	typ := reflect.TypeFor[*natsqueue.Queue]()
	for _, m := range []string{"Put", "Get", "Stop"} {
		_, ok := typ.MethodByName(m)
		assert.False(t, ok, "*natsqueue.Queue has %s: users could call the Dispatcher's method", m)
	}
	assert.False(t, typ.Implements(reflect.TypeFor[callback.Queue]()), "*natsqueue.Queue is itself a callback.Queue")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := natsqueue.Embedded(ctx, t.TempDir(), natsqueue.Options{})
	require.NoError(t, err)
	a := newApp(t, nil)
	d, err := callback.New(callback.Config{URL: a.URL, Queue: q.ForDispatcher(), Logger: quiet})
	require.NoError(t, err)
	require.NoError(t, d.After(ctx, 1, "message.send.after", body(1)))
	a.waitDelivered(t, 1, 10*time.Second)
	_, err = q.Pending(ctx)
	require.NoError(t, err, "the operator's methods work while the Dispatcher runs")

	require.NoError(t, d.Close(ctx))
	_, err = q.Pending(ctx)
	assert.Error(t, err, "Dispatcher.Close closed the Queue (and its embedded server)")
}

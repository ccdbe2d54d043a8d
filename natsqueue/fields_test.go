package natsqueue_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// The queue stores every field of an event, not just its body: Tencent's
// ClientIP and OptPlatform come from the context of After and must reach the
// App backend from the queue, and a dead letter says when After accepted it.
func TestEventFieldsSurviveTheQueue(t *testing.T) {
	var mu sync.Mutex
	var queries []url.Values
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Query())
		mu.Unlock()
		w.WriteHeader(http.StatusBadRequest) // permanent: dead-lettered at once
	}))
	defer app.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := natsqueue.Embedded(ctx, t.TempDir(), natsqueue.Options{})
	require.NoError(t, err)
	dead := make(chan callback.Event, 1)
	d, err := callback.New(callback.Config{
		URL: app.URL, Protocol: callback.Tencent, Queue: q.ForDispatcher(), Logger: quiet,
		DeadLetter: func(ev callback.Event, _ error) { dead <- ev },
	})
	require.NoError(t, err)
	defer d.Close(ctx)

	before := time.Now()
	require.NoError(t, d.After(callback.WithClient(ctx, "203.0.113.7", "Android"), 1400000000, "C2C.CallbackAfterSendMsg", []byte(`{"k":1}`)))

	select {
	case ev := <-dead:
		assert.Equal(t, "203.0.113.7", ev.ClientIP)
		assert.Equal(t, "Android", ev.Platform)
		assert.WithinRange(t, ev.Queued, before.Add(-time.Second), time.Now())
		assert.Equal(t, 1400000000, ev.AppID)
		assert.Equal(t, `{"k":1}`, string(ev.Body))
	case <-time.After(10 * time.Second):
		t.Fatal("the event was not dead-lettered")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, queries, 1)
	assert.Equal(t, "203.0.113.7", queries[0].Get("ClientIP"))
	assert.Equal(t, "Android", queries[0].Get("OptPlatform"))
}

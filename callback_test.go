package callback_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  callback.Config
		want string
	}{
		{"no URL", callback.Config{}, "URL is required"},
		{"unparsable URL", callback.Config{URL: "http://[::1"}, "does not parse"},
		{"no scheme", callback.Config{URL: "example.com/callback"}, "scheme"},
		{"ftp", callback.Config{URL: "ftp://example.com/cb"}, "scheme"},
		{"no host", callback.Config{URL: "http:///callback"}, "no host"},
		{"negative timeout", callback.Config{URL: "http://h/", Timeout: -1}, "Timeout is negative"},
		{"negative queue", callback.Config{URL: "http://h/", QueueSize: -1}, "QueueSize is negative"},
		{"negative workers", callback.Config{URL: "http://h/", Workers: -1}, "Workers is negative"},
		{"negative connection cap", callback.Config{URL: "http://h/", MaxConnsPerHost: -1}, "MaxConnsPerHost is negative"},
		// Several wrong fields: the error names the first, every time.
		{"two negative", callback.Config{URL: "http://h/", MaxIdleConnsPerHost: -1, Timeout: -1}, "Timeout is negative"},
		{"negative header cap", callback.Config{URL: "http://h/", MaxResponseHeaderBytes: -1, MaxConnsPerHost: -1}, "MaxResponseHeaderBytes is negative"},
		{"wait max below min", callback.Config{URL: "http://h/", RetryWaitMin: time.Second, RetryWaitMax: time.Millisecond}, "RetryWaitMax"},
		{"negative rule timeout", callback.Config{URL: "http://h/", Commands: map[string]callback.Rule{"x": {Timeout: -time.Second}}}, "negative Timeout"},
		{"empty command", callback.Config{URL: "http://h/", Commands: map[string]callback.Rule{"": {}}}, "empty command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := callback.New(tt.cfg)
			assert.Nil(t, d)
			require.ErrorIs(t, err, callback.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestNewCopiesCommands(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	rules := map[string]callback.Rule{"friend.add.before": {Disabled: true}}
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, Commands: rules})
	rules["friend.add.before"] = callback.Rule{} // must not affect d
	d.Before(context.Background(), 1, "friend.add.before", []byte(`{}`))
	assert.Equal(t, 0, b.count())
}

func TestCloseDrainsSlowBackend(t *testing.T) {
	var delivered atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		delivered.Add(1)
	})
	var dead deadLetters
	d, err := callback.New(callback.Config{URL: b.URL, Workers: 4, DeadLetter: dead.hook, Logger: discardLogger()})
	require.NoError(t, err)
	for i := range 40 {
		require.NoError(t, d.After(context.Background(), i, "message.send.after", []byte(`{}`)))
	}
	require.NoError(t, d.Close(context.Background()))
	assert.Equal(t, int64(40), delivered.Load(), "Close must wait for every queued event")
	assert.Equal(t, 0, dead.len())
}

func TestCloseConcurrentCallers(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{}`))
	d, err := callback.New(callback.Config{URL: b.URL, Logger: discardLogger()})
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, d.After(context.Background(), i, "message.send.after", []byte(`{}`)))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { assert.NoError(t, d.Close(context.Background())) })
	}
	wg.Wait()
	assert.Equal(t, 100, b.count())
}

func TestDeadLettersAreLoggedWithoutHook(t *testing.T) {
	d, logs := newDispatcher(t, fastRetries(callback.Config{URL: "http://user:pw@127.0.0.1:1/cb?token=x", Retries: -1}))
	require.NoError(t, d.After(context.Background(), 3, "group.create.after", []byte(`{"k":"v"}`)))
	require.NoError(t, d.Close(context.Background()))
	log := logs.String()
	assert.Contains(t, log, "after event not delivered")
	assert.Contains(t, log, `"url":"http://127.0.0.1:1/cb"`)
	assert.NotContains(t, log, "pw", "credentials must not be logged")
	assert.NotContains(t, log, "token=x", "queries must not be logged")
}

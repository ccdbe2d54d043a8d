package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/format/formattest"
	"github.com/imcallback/callback/receiver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The format passes the conformance table the built-in formats pass.
func TestConformance(t *testing.T) {
	formattest.Run(t, Hooks, "")
	formattest.Run(t, Hooks, callbacktest.NewSecret())
}

// TestDispatcherToReceiver: a Dispatcher and a receiver speaking Hooks,
// chosen per app by a Resolver beside a built-in format: a deny, a
// rewrite applied, the After carrying the rewritten body.
func TestDispatcherToReceiver(t *testing.T) {
	secret := callbacktest.NewSecret()
	h, err := receiver.New(receiver.Config{Protocol: Hooks, Secret: secret, Dedup: 100, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	h.Handle("message.before", func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		var m struct{ Text string }
		if err := json.Unmarshal(req.Body, &m); err != nil {
			return receiver.Decision{}, err
		}
		if m.Text == "buy now" {
			return receiver.Deny(4001, "advertising"), nil
		}
		return receiver.Rewrite(json.RawMessage(`{"text":"hello, ****"}`)), nil
	})
	var mu sync.Mutex
	var afters []*receiver.Request
	h.Handle("message.after", func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		mu.Lock()
		defer mu.Unlock()
		afters = append(afters, req)
		return receiver.Allow(), nil
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	builtin := callbacktest.NewServer(t, callbacktest.Config{})

	d, err := callback.New(callback.Config{
		Resolver: callback.ResolverFunc(func(_ context.Context, app int) (callback.Endpoint, error) {
			if app == 2 {
				return callback.Endpoint{URL: builtin.URL}, nil
			}
			return callback.Endpoint{URL: srv.URL + "/hooks", Protocol: Hooks, Secret: secret}, nil
		}),
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx := context.Background()

	r := d.Before(ctx, 1, "message.before", []byte(`{"from":"alice","text":"buy now"}`))
	require.NoError(t, r.Err)
	assert.Equal(t, callback.Deny, r.Action)
	assert.Equal(t, 4001, r.Code)
	assert.Equal(t, "advertising", r.Msg)
	assert.Equal(t, Hooks, r.Protocol)

	body := []byte(`{"from":"alice","text":"hello, spam"}`)
	r = d.Before(callback.WithEventID(ctx, "m-1"), 1, "message.before", body)
	require.NoError(t, r.Err)
	require.Equal(t, callback.Allow, r.Action)
	body, err = r.Apply(body)
	require.NoError(t, err)
	assert.JSONEq(t, `{"from":"alice","text":"hello, ****"}`, string(body))
	require.NoError(t, d.After(callback.WithEventID(ctx, "m-1"), 1, "message.after", body))

	r = d.Before(ctx, 2, "message.before", body)
	require.NoError(t, r.Err)
	assert.Equal(t, callback.AppCommand, r.Protocol, "the other app's format")

	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, d.Close(closeCtx))
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, afters, 1)
	assert.JSONEq(t, `{"from":"alice","text":"hello, ****"}`, string(afters[0].Body))
	assert.Equal(t, "m-1", afters[0].ID)
	assert.Equal(t, 1, afters[0].AppID)
}

func TestRun(t *testing.T) {
	require.NoError(t, run())
}

package callback_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// A Response the Dispatcher allows by itself (a failure that failed open,
// a disabled command) carries the protocol's own allow code and message,
// the ones its App backend allows with.
func TestAllowedByDispatcherUsesProtocolsCodes(t *testing.T) {
	down := newBackend(t, answerJSON(503, `{}`))
	seedAllow := callback.Response{Code: 200, Msg: "success", Action: callback.Allow}
	tencentAllow := callback.Response{Code: 0, Msg: "", Action: callback.Allow, Protocol: callback.Tencent}

	apps := newAppTable(map[int]callback.Endpoint{
		1: {URL: down.URL},
		2: {URL: down.URL, Protocol: callback.Tencent},
	})
	rules := map[string]callback.Rule{"off": {Disabled: true}}
	tests := []struct {
		name string
		cfg  callback.Config
		app  int
		want callback.Response
	}{
		{"seed", callback.Config{URL: down.URL}, 1, seedAllow},
		{"tencent", callback.Config{URL: down.URL, Protocol: callback.Tencent}, 1, tencentAllow},
		{"resolved seed app", callback.Config{Resolver: apps, Protocol: callback.Tencent}, 1, seedAllow},
		{"resolved tencent app", callback.Config{Resolver: apps}, 2, tencentAllow},
		// An app that cannot be resolved: its protocol is unknown, so
		// Config.Protocol's codes apply.
		{"unresolved, Config.Protocol seed", callback.Config{Resolver: apps}, 404, seedAllow},
		{"unresolved, Config.Protocol tencent", callback.Config{Resolver: apps, Protocol: callback.Tencent}, 404, tencentAllow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Commands = rules
			tt.cfg.Breaker = callback.Breaker{Disabled: true}
			d, _ := newDispatcher(t, tt.cfg)
			ctx := context.Background()

			r := d.Before(ctx, tt.app, "cmd", []byte(`{}`))
			require.Error(t, r.Err, "the callback must fail")
			assert.True(t, errors.Is(r.Err, callback.ErrStatus) || errors.Is(r.Err, callback.ErrResolve), "got %v", r.Err)
			r.Err = nil
			assert.Equal(t, tt.want, r, "failed open")

			sent := down.count()
			r = d.Before(ctx, tt.app, "off", []byte(`{}`))
			assert.Equal(t, tt.want, r, "disabled command")
			assert.Equal(t, sent, down.count(), "a disabled command sends nothing")
		})
	}
}

func TestEndpointWithoutResolver(t *testing.T) {
	d, _ := newDispatcher(t, callback.Config{URL: "http://127.0.0.1:1/cb", Protocol: callback.Tencent, Secret: "token"})
	ep, err := d.Endpoint(context.Background(), 42)
	require.NoError(t, err)
	assert.Equal(t, callback.Endpoint{URL: "http://127.0.0.1:1/cb", Protocol: callback.Tencent, Timeout: 2 * time.Second}, ep,
		"Config's URL and protocol, the default timeout, no secret")
}

func TestEndpointWithResolver(t *testing.T) {
	apps := newAppTable(map[int]callback.Endpoint{
		1: {URL: "http://127.0.0.1:1/seed", Secret: secretA, Commands: map[string]callback.Rule{"x": {Disabled: true}}},
		2: {URL: "http://127.0.0.1:1/tencent", Protocol: callback.Tencent, Secret: "token", Timeout: 300 * time.Millisecond},
		3: {URL: "ftp://nope"},
	})
	d, _ := newDispatcher(t, callback.Config{Resolver: apps, Timeout: time.Second})
	ctx := context.Background()

	ep, err := d.Endpoint(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, callback.Endpoint{URL: "http://127.0.0.1:1/seed", Protocol: callback.AppCommand, Timeout: time.Second}, ep,
		"Config.Timeout where the Endpoint has none; no secret, no rules")

	ep, err = d.Endpoint(ctx, 2)
	require.NoError(t, err)
	assert.Equal(t, callback.Endpoint{URL: "http://127.0.0.1:1/tencent", Protocol: callback.Tencent, Timeout: 300 * time.Millisecond}, ep)

	// A change of settings is seen at once, as Before would see it.
	apps.set(2, callback.Endpoint{URL: "http://127.0.0.1:1/moved"})
	ep, err = d.Endpoint(ctx, 2)
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:1/moved", ep.URL)
	assert.Equal(t, callback.AppCommand, ep.Protocol)

	_, err = d.Endpoint(ctx, 404)
	assert.ErrorIs(t, err, callback.ErrResolve)
	assert.ErrorIs(t, err, callback.ErrUnknownApp)

	_, err = d.Endpoint(ctx, 3)
	assert.ErrorIs(t, err, callback.ErrResolve)
	assert.ErrorIs(t, err, callback.ErrInvalidConfig)
	assert.NotContains(t, err.Error(), secretA)

	apps.fail(errors.New("store down"))
	_, err = d.Endpoint(ctx, 1)
	assert.ErrorIs(t, err, callback.ErrResolve)
	assert.ErrorContains(t, err, "store down")
}

// Asking for an app's endpoint reuses the prepared route: no allocation
// once the app has been seen.
func TestEndpointIsCheap(t *testing.T) {
	apps := callback.ResolverFunc(func(context.Context, int) (callback.Endpoint, error) {
		return callback.Endpoint{URL: "http://127.0.0.1:1/cb", Protocol: callback.Tencent}, nil
	})
	d, _ := newDispatcher(t, callback.Config{Resolver: apps})
	ctx := context.Background()
	_, err := d.Endpoint(ctx, 1)
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(100, func() {
		if ep, err := d.Endpoint(ctx, 1); err != nil || ep.Protocol != callback.Tencent {
			t.Fatalf("got %v, %v", ep, err)
		}
	})
	assert.Zero(t, allocs, "allocations per Endpoint call")
}

// BenchmarkEndpoint measures Dispatcher.Endpoint with a Resolver that
// answers from memory, against the Resolve call alone.
func BenchmarkEndpoint(b *testing.B) {
	ep := callback.Endpoint{URL: "http://127.0.0.1:1/cb", Protocol: callback.Tencent, Secret: "token",
		Commands: map[string]callback.Rule{"x": {Disabled: true}}}
	apps := callback.ResolverFunc(func(context.Context, int) (callback.Endpoint, error) { return ep, nil })
	d, err := callback.New(callback.Config{Resolver: apps, Logger: discardLogger()})
	require.NoError(b, err)
	defer d.Close(context.Background())
	ctx := context.Background()
	b.Run("Resolve", func(b *testing.B) {
		for b.Loop() {
			_, _ = apps.Resolve(ctx, 1)
		}
	})
	b.Run("Endpoint", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = d.Endpoint(ctx, 1)
		}
	})
}

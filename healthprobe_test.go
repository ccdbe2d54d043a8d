package callback_test

import (
	"context"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// TestHealthProbe: with Health.Probe, a disabled endpoint is probed on
// that schedule and stays disabled while the probe fails; once its
// backend answers, the probe enables it (OnHealth: Enabled) and Before
// reaches it again. An endpoint whose only app a Resolver disabled is
// never probed.
func TestHealthProbe(t *testing.T) {
	var gone atomic.Bool
	gone.Store(true)
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			answerJSON(http.StatusGone, `{}`)(w, r)
			return
		}
		answerJSON(http.StatusOK, allowAnswer)(w, r)
	})
	c := newBackend(t, answerJSON(http.StatusGone, `{}`))
	var off atomic.Bool // app 3 disabled by its Endpoint
	apps := callback.ResolverFunc(func(_ context.Context, appID int) (callback.Endpoint, error) {
		if appID == 3 {
			return callback.Endpoint{URL: c.URL + "/cb", Disabled: off.Load()}, nil
		}
		return callback.Endpoint{URL: a.URL + "/cb"}, nil
	})
	var log healthLog
	d, _ := newDispatcher(t, callback.Config{Resolver: apps, Health: callback.HealthPolicy{Probe: 20 * time.Millisecond}, OnHealth: log.hook})
	ctx := context.Background()

	r := d.Before(ctx, 1, "C2C.CallbackBeforeSendMsg", []byte(`{}`))
	require.Error(t, r.Err)
	r = d.Before(ctx, 3, "C2C.CallbackBeforeSendMsg", []byte(`{}`))
	require.Error(t, r.Err)
	off.Store(true)
	r = d.Before(ctx, 3, "C2C.CallbackBeforeSendMsg", []byte(`{}`)) // the route is now disabled
	require.ErrorIs(t, r.Err, callback.ErrEndpointDisabled)
	require.Len(t, d.Stats().Disabled, 2)
	cSeen := c.count()

	// Probes come and fail: still disabled.
	aSeen := a.count()
	require.Eventually(t, func() bool { return a.count() >= aSeen+3 }, 30*time.Second, 5*time.Millisecond, "a is probed")
	assert.Contains(t, d.Stats().Disabled, a.URL+"/cb")
	for _, q := range a.requests()[aSeen:] {
		assert.Contains(t, string(q.Body), "check", "only the probe is sent")
	}

	gone.Store(false)
	require.Eventually(t, func() bool { return !slices.Contains(d.Stats().Disabled, a.URL+"/cb") }, 30*time.Second, 5*time.Millisecond, "a enabled by a probe")
	require.Eventually(t, func() bool { return slices.Contains(log.states(), callback.HealthEnabled) }, 30*time.Second, 5*time.Millisecond)
	var enabled []string
	for _, ev := range log.events() {
		if ev.State == callback.HealthEnabled {
			enabled = append(enabled, ev.URL)
		}
	}
	assert.Equal(t, []string{a.URL + "/cb"}, enabled)
	r = d.Before(ctx, 2, "C2C.CallbackBeforeSendMsg", []byte(`{}`))
	require.NoError(t, r.Err)
	assert.Equal(t, []string{c.URL + "/cb"}, d.Stats().Disabled)
	assert.Equal(t, cSeen, c.count(), "an endpoint disabled by its Resolver is not probed")
}

// TestHealthProbeStatic: a Dispatcher with one URL probes it, and a
// negative Probe is a configuration error.
func TestHealthProbeStatic(t *testing.T) {
	var gone atomic.Bool
	gone.Store(true)
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			answerJSON(http.StatusGone, `{}`)(w, r)
			return
		}
		answerJSON(http.StatusOK, allowAnswer)(w, r)
	})
	d, _ := newDispatcher(t, callback.Config{URL: a.URL, Health: callback.HealthPolicy{Probe: 10 * time.Millisecond}})
	r := d.Before(context.Background(), 1, "C2C.CallbackBeforeSendMsg", []byte(`{}`))
	require.Error(t, r.Err)
	require.NotEmpty(t, d.Stats().Disabled)
	gone.Store(false)
	require.Eventually(t, func() bool { return len(d.Stats().Disabled) == 0 }, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, d.Before(context.Background(), 1, "C2C.CallbackBeforeSendMsg", []byte(`{}`)).Err)

	_, err := callback.New(callback.Config{URL: a.URL, Health: callback.HealthPolicy{Probe: -time.Second}})
	assert.ErrorIs(t, err, callback.ErrInvalidConfig)
}

// TestHealthProbeClose: Close ends a probe that is waiting for an answer
// and the prober's goroutine (goleak checks it ended).
func TestHealthProbeClose(t *testing.T) {
	var gone atomic.Bool
	gone.Store(true)
	probing := make(chan struct{}, 1)
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			answerJSON(http.StatusGone, `{}`)(w, r)
			return
		}
		select {
		case probing <- struct{}{}:
		default:
		}
		hang(w, r)
	})
	d, err := callback.New(callback.Config{URL: a.URL, Timeout: time.Minute, Health: callback.HealthPolicy{Probe: 10 * time.Millisecond}})
	require.NoError(t, err)
	require.Error(t, d.Before(context.Background(), 1, "C2C.CallbackBeforeSendMsg", []byte(`{}`)).Err)
	gone.Store(false)
	select {
	case <-probing:
	case <-time.After(30 * time.Second):
		t.Fatal("no probe within 30 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, d.Close(ctx), "Close does not wait for the probe's minute")
}

// readmeProbe is the README's example of Health.Probe ("Endpoint health").
var readmeProbe = callback.Config{
	Health: callback.HealthPolicy{DisableAfter: 24 * time.Hour, Probe: 10 * time.Minute},
}

var _ = readmeProbe

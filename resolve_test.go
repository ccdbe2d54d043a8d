package callback_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// appTable is an in-memory Resolver whose endpoints a test changes while
// the Dispatcher runs.
type appTable struct {
	mu    sync.Mutex
	apps  map[int]callback.Endpoint
	err   error // returned for every app when set: a store that is down
	calls atomic.Int64
}

func newAppTable(apps map[int]callback.Endpoint) *appTable {
	return &appTable{apps: apps}
}

func (a *appTable) Resolve(_ context.Context, appID int) (callback.Endpoint, error) {
	a.calls.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return callback.Endpoint{}, a.err
	}
	ep, ok := a.apps[appID]
	if !ok {
		return callback.Endpoint{}, fmt.Errorf("app %d: %w", appID, callback.ErrUnknownApp)
	}
	return ep, nil
}

func (a *appTable) set(appID int, ep callback.Endpoint) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.apps[appID] = ep
}

func (a *appTable) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

const okSeed = `{"code":200,"msg":"success"}`

func TestResolverSendsEachAppToItsEndpoint(t *testing.T) {
	var verified atomic.Int64
	seed := newBackend(t, verifyWith(t, &verified, secretA))
	tencent := newBackend(t, answerJSON(200, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`))
	apps := newAppTable(map[int]callback.Endpoint{
		1: {URL: seed.URL + "/one", Secret: secretA},
		2: {URL: tencent.URL + "/two", Protocol: callback.Tencent, Secret: "token2"},
	})
	d, _ := newDispatcher(t, callback.Config{Resolver: apps})

	ctx := context.Background()
	for _, app := range []int{1, 2} {
		require.NoError(t, d.Before(ctx, app, "message.send.before", []byte(`{}`)).Err, "app %d Before", app)
		require.NoError(t, d.After(ctx, app, "message.send.after", []byte(`{}`)), "app %d After", app)
	}
	require.NoError(t, d.Close(ctx))

	assert.Equal(t, int64(2), verified.Load(), "app 1's requests verified with app 1's secret")
	for _, req := range seed.requests() {
		assert.Equal(t, "/one", req.Path)
		assert.Equal(t, []string{"1"}, req.Query["appId"], "seed format's appId")
	}
	got := tencent.requests()
	require.Len(t, got, 2, "app 2's requests")
	for _, req := range got {
		assert.Equal(t, "/two", req.Path)
		assert.Equal(t, []string{"2"}, req.Query["SdkAppid"], "Tencent format's SdkAppid")
		ts := url.Values(req.Query).Get("RequestTime")
		assert.Equal(t, []string{tencentSignOf("token2", ts)}, req.Query["Sign"], "signed with app 2's token")
	}
}

func TestResolverRulesOverrideConfigCommands(t *testing.T) {
	failing := newBackend(t, answerJSON(500, `{}`))
	slow := newBackend(t, hang)
	apps := newAppTable(map[int]callback.Endpoint{
		// Inherits Config.Commands: "guarded" fails closed.
		1: {URL: failing.URL},
		// Overrides "guarded" (the whole Rule) and disables "quiet".
		2: {URL: failing.URL, Commands: map[string]callback.Rule{
			"guarded": {},
			"quiet":   {Disabled: true},
		}},
		// Its own Timeout applies to commands without one.
		3: {URL: slow.URL, Timeout: 100 * time.Millisecond},
		// A Rule's Timeout beats the Endpoint's.
		4: {URL: slow.URL, Timeout: 10 * time.Second, Commands: map[string]callback.Rule{
			"cmd": {Timeout: 100 * time.Millisecond},
		}},
	})
	d, _ := newDispatcher(t, callback.Config{
		Resolver: apps,
		Commands: map[string]callback.Rule{"guarded": {FailClosed: true}},
		Timeout:  time.Minute, // what apps 3 and 4 would wait without their rules
	})
	ctx := context.Background()

	r := d.Before(ctx, 1, "guarded", []byte(`{}`))
	assert.Equal(t, callback.Deny, r.Action, "app 1 inherits FailClosed: got %v", r.Action)
	assert.ErrorIs(t, r.Err, callback.ErrStatus)

	r = d.Before(ctx, 2, "guarded", []byte(`{}`))
	assert.Equal(t, callback.Allow, r.Action, "app 2's own rule fails open: got %v", r.Action)
	assert.ErrorIs(t, r.Err, callback.ErrStatus)

	before := failing.count()
	r = d.Before(ctx, 2, "quiet", []byte(`{}`))
	assert.Equal(t, callback.Allow, r.Action)
	assert.NoError(t, r.Err)
	require.NoError(t, d.After(ctx, 2, "quiet", []byte(`{}`)))
	assert.Equal(t, before, failing.count(), "a command the app disables sends nothing")

	for _, app := range []int{3, 4} {
		start := time.Now()
		r = d.Before(ctx, app, "cmd", []byte(`{}`))
		assert.ErrorIs(t, r.Err, context.DeadlineExceeded, "app %d", app)
		assert.Less(t, time.Since(start), 20*time.Second, "app %d: its 100 ms timeout must apply, not the config's minute", app)
	}
}

func TestResolverChangeTakesEffectWithoutRestart(t *testing.T) {
	a := newBackend(t, answerJSON(200, okSeed))
	b := newBackend(t, answerJSON(200, okSeed))
	apps := newAppTable(map[int]callback.Endpoint{7: {URL: a.URL}})
	d, _ := newDispatcher(t, callback.Config{Resolver: apps})
	ctx := context.Background()

	require.NoError(t, d.Before(ctx, 7, "cmd", []byte(`{}`)).Err)
	apps.set(7, callback.Endpoint{URL: b.URL})
	require.NoError(t, d.Before(ctx, 7, "cmd", []byte(`{}`)).Err)
	require.NoError(t, d.After(ctx, 7, "cmd", []byte(`{}`)))
	require.NoError(t, d.Close(ctx))

	assert.Equal(t, 1, a.count(), "requests to the old URL")
	assert.Equal(t, 2, b.count(), "requests to the new URL")
}

func TestResolverAfterDeliversWhereItResolved(t *testing.T) {
	release := make(chan struct{})
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		answerJSON(200, okSeed)(w, r)
	})
	b := newBackend(t, answerJSON(200, okSeed))
	apps := newAppTable(map[int]callback.Endpoint{7: {URL: a.URL}})
	d, _ := newDispatcher(t, callback.Config{Resolver: apps, Workers: 1})
	ctx := context.Background()

	require.NoError(t, d.After(ctx, 7, "cmd", []byte(`{"n":1}`))) // the worker blocks on it
	require.Eventually(t, func() bool { return a.count() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, d.After(ctx, 7, "cmd", []byte(`{"n":2}`))) // queued, resolved to a
	apps.set(7, callback.Endpoint{URL: b.URL})
	require.NoError(t, d.After(ctx, 7, "cmd", []byte(`{"n":3}`))) // resolved to b
	close(release)
	require.NoError(t, d.Close(ctx))

	assert.Equal(t, 2, a.count(), "events accepted before the change go to the old URL")
	got := b.requests()
	require.Len(t, got, 1, "events accepted after the change go to the new URL")
	assert.JSONEq(t, `{"n":3}`, string(got[0].Body))
}

func TestResolverFailures(t *testing.T) {
	b := newBackend(t, answerJSON(200, okSeed))
	errDown := errors.New("sql: database is closed")
	tests := []struct {
		name     string
		apps     map[int]callback.Endpoint
		storeErr error
		want     []error // each must be in Response.Err and in After's error
	}{
		{"unknown app", map[int]callback.Endpoint{}, nil,
			[]error{callback.ErrResolve, callback.ErrUnknownApp}},
		{"store down", map[int]callback.Endpoint{1: {URL: b.URL}}, errDown,
			[]error{callback.ErrResolve, errDown}},
		{"bad URL", map[int]callback.Endpoint{1: {URL: "ftp://host/x"}}, nil,
			[]error{callback.ErrResolve, callback.ErrInvalidConfig}},
		{"no URL", map[int]callback.Endpoint{1: {}}, nil,
			[]error{callback.ErrResolve, callback.ErrInvalidConfig}},
		{"bad secret", map[int]callback.Endpoint{1: {URL: b.URL, Secret: "whsec_not-base64-SECRETVALUE"}}, nil,
			[]error{callback.ErrResolve, callback.ErrInvalidConfig}},
		{"negative timeout", map[int]callback.Endpoint{1: {URL: b.URL, Timeout: -1}}, nil,
			[]error{callback.ErrResolve, callback.ErrInvalidConfig}},
		{"OpenIM secret not whsec_", map[int]callback.Endpoint{1: {URL: b.URL, Protocol: callback.OpenIM, Secret: "t0ken"}}, nil,
			[]error{callback.ErrResolve, callback.ErrInvalidConfig}},
		{"empty command name", map[int]callback.Endpoint{1: {URL: b.URL, Commands: map[string]callback.Rule{"": {}}}}, nil,
			[]error{callback.ErrResolve, callback.ErrInvalidConfig}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apps := newAppTable(tt.apps)
			apps.fail(tt.storeErr)
			d, logs := newDispatcher(t, callback.Config{
				Resolver: apps,
				Commands: map[string]callback.Rule{"closed": {FailClosed: true}},
			})
			ctx := context.Background()
			sent := b.count()

			r := d.Before(ctx, 1, "open", []byte(`{}`))
			assert.Equal(t, callback.Allow, r.Action, "fails open: got %v", r.Action)
			assert.Equal(t, 200, r.Code)
			r2 := d.Before(ctx, 1, "closed", []byte(`{}`))
			assert.Equal(t, callback.Deny, r2.Action, "Config.Commands' FailClosed applies: got %v", r2.Action)
			assert.Equal(t, 503, r2.Code)
			err := d.After(ctx, 1, "open", []byte(`{}`))
			for _, want := range tt.want {
				assert.ErrorIs(t, r.Err, want, "Before's Err")
				assert.ErrorIs(t, r2.Err, want, "Before's Err, fail closed")
				assert.ErrorIs(t, err, want, "After's error")
			}
			assert.NotContains(t, r.Err.Error(), "SECRETVALUE", "the secret must never be in an error")
			assert.Equal(t, sent, b.count(), "nothing is sent for an app that did not resolve")
			assert.Contains(t, logs.String(), `"app_id":1`)
			assert.NotContains(t, logs.String(), "SECRETVALUE", "the secret must never be logged")
		})
	}
}

func TestResolverUnknownAppIsForgotten(t *testing.T) {
	b := newBackend(t, answerJSON(200, okSeed))
	apps := newAppTable(map[int]callback.Endpoint{1: {URL: b.URL}})
	d, _ := newDispatcher(t, callback.Config{Resolver: apps})
	ctx := context.Background()

	require.NoError(t, d.Before(ctx, 1, "cmd", []byte(`{}`)).Err)
	apps.mu.Lock()
	delete(apps.apps, 1)
	apps.mu.Unlock()
	assert.ErrorIs(t, d.Before(ctx, 1, "cmd", []byte(`{}`)).Err, callback.ErrUnknownApp, "a deleted app")
	apps.set(1, callback.Endpoint{URL: b.URL})
	assert.NoError(t, d.Before(ctx, 1, "cmd", []byte(`{}`)).Err, "the app added again")
	assert.Equal(t, 2, b.count())
}

func TestResolverPreparesEachEndpointOnce(t *testing.T) {
	b := newBackend(t, answerJSON(200, okSeed))
	rules := map[string]callback.Rule{"cmd": {FailClosed: true}}
	apps := newAppTable(map[int]callback.Endpoint{1: {URL: b.URL, Secret: secretA, Commands: rules}})
	d, _ := newDispatcher(t, callback.Config{Resolver: apps})
	ctx := context.Background()

	first, err := callback.RouteOf(d, ctx, 1)
	require.NoError(t, err)
	again, err := callback.RouteOf(d, ctx, 1)
	require.NoError(t, err)
	assert.Same(t, first, again, "the same settings must not be prepared again")

	// The resolver changes the map it returned before: the Dispatcher kept
	// its own copy, so it sees the change.
	apps.mu.Lock()
	rules["cmd"] = callback.Rule{}
	apps.mu.Unlock()
	changed, err := callback.RouteOf(d, ctx, 1)
	require.NoError(t, err)
	assert.NotSame(t, first, changed, "changed rules must be prepared anew")

	apps.set(1, callback.Endpoint{URL: b.URL, Secret: secretB, Commands: rules})
	rotated, err := callback.RouteOf(d, ctx, 1)
	require.NoError(t, err)
	assert.NotSame(t, changed, rotated, "a rotated secret must be prepared anew")
}

func TestResolverConcurrentChanges(t *testing.T) {
	backends := []*backend{newBackend(t, answerJSON(200, okSeed)), newBackend(t, answerJSON(200, okSeed))}
	apps := newAppTable(map[int]callback.Endpoint{})
	for app := range 8 {
		apps.set(app, callback.Endpoint{URL: backends[app%2].URL})
	}
	d, _ := newDispatcher(t, callback.Config{Resolver: apps, Logger: discardLogger()})
	ctx := context.Background()

	stop := make(chan struct{})
	var mover sync.WaitGroup
	mover.Go(func() { // moves apps between the backends, rotates secrets
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			apps.set(i%8, callback.Endpoint{URL: backends[i%2].URL, Secret: []string{"", secretA}[i%2],
				Commands: map[string]callback.Rule{"cmd": {Timeout: time.Duration(i%3+1) * time.Second}}})
		}
	})
	var failed atomic.Int64
	var callers sync.WaitGroup
	for g := range 8 {
		callers.Go(func() {
			for i := range 50 {
				app := (g + i) % 9 // app 8 is unknown
				if r := d.Before(ctx, app, "cmd", []byte(`{}`)); r.Err != nil && !errors.Is(r.Err, callback.ErrUnknownApp) {
					failed.Add(1)
				}
				if err := d.After(ctx, app, "cmd", []byte(`{"i":`+strconv.Itoa(i)+`}`)); err != nil && !errors.Is(err, callback.ErrUnknownApp) {
					failed.Add(1)
				}
			}
		})
	}
	callers.Wait()
	close(stop)
	mover.Wait()
	require.NoError(t, d.Close(ctx))
	assert.Zero(t, failed.Load(), "calls that failed for another reason than an unknown app")
}

func TestNewWithResolver(t *testing.T) {
	apps := newAppTable(map[int]callback.Endpoint{})
	_, err := callback.New(callback.Config{Resolver: apps, URL: "ftp://x"})
	assert.ErrorIs(t, err, callback.ErrInvalidConfig, "a URL given with a Resolver is still checked")

	d, err := callback.New(callback.Config{Resolver: apps, Logger: discardLogger()})
	require.NoError(t, err, "URL is optional with a Resolver")
	require.NoError(t, d.Close(context.Background()))
}

func TestEndpointValidate(t *testing.T) {
	tests := []struct {
		name string
		ep   callback.Endpoint
		ok   bool
	}{
		{"seed", callback.Endpoint{URL: "https://app.example/cb", Secret: secretA}, true},
		{"tencent", callback.Endpoint{URL: "http://app.example/cb?x=1", Protocol: callback.Tencent, Secret: "tok"}, true},
		{"no URL", callback.Endpoint{}, false},
		{"relative URL", callback.Endpoint{URL: "/cb"}, false},
		{"tencent token with a space", callback.Endpoint{URL: "http://a/cb", Protocol: callback.Tencent, Secret: "a b"}, false},
		{"negative rule timeout", callback.Endpoint{URL: "http://a/cb", Commands: map[string]callback.Rule{"c": {Timeout: -time.Second}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ep.Validate()
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, callback.ErrInvalidConfig)
			}
		})
	}
}

// BenchmarkBeforeStatic and BenchmarkBeforeResolved compare the cost of a
// Before call to one URL and to an app's resolved endpoint.
func BenchmarkBeforeStatic(b *testing.B) {
	srv := newBenchBackend(b).URL
	benchBefore(b, callback.Config{URL: srv})
}

func BenchmarkBeforeResolved(b *testing.B) {
	srv := newBenchBackend(b).URL
	ep := callback.Endpoint{URL: srv, Commands: map[string]callback.Rule{"other": {Disabled: true}}}
	benchBefore(b, callback.Config{Resolver: callback.ResolverFunc(func(context.Context, int) (callback.Endpoint, error) {
		return ep, nil
	})})
}

func benchBefore(b *testing.B, cfg callback.Config) {
	cfg.Logger = discardLogger()
	d, err := callback.New(cfg)
	require.NoError(b, err)
	defer func() { _ = d.Close(context.Background()) }()
	ctx := context.Background()
	body := []byte(`{"from":"alice","to":"bob","text":"hi"}`)
	b.ReportAllocs()
	for b.Loop() {
		if r := d.Before(ctx, 1400000000, "cmd", body); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// A command disabled in Config.Commands sends nothing, so it is allowed (and
// accepted by After) even for an app whose endpoint cannot be resolved: no
// failure to report, nothing to log.
func TestResolverFailureOnDisabledCommand(t *testing.T) {
	resolver := callback.ResolverFunc(func(context.Context, int) (callback.Endpoint, error) {
		return callback.Endpoint{}, callback.ErrUnknownApp
	})
	d, logs := newDispatcher(t, callback.Config{
		Resolver: resolver,
		Commands: map[string]callback.Rule{"user.modify.after": {Disabled: true}, "friend.add.before": {Disabled: true}},
	})
	r := d.Before(context.Background(), 7, "friend.add.before", []byte(`{}`))
	assert.Equal(t, callback.Response{Code: 200, Msg: "success", Action: callback.Allow}, r)
	assert.NoError(t, d.After(context.Background(), 7, "user.modify.after", []byte(`{}`)))

	r = d.Before(context.Background(), 7, "message.send.before", []byte(`{}`))
	assert.ErrorIs(t, r.Err, callback.ErrUnknownApp, "an enabled command still reports the failure")
	assert.ErrorIs(t, d.After(context.Background(), 7, "message.send.after", []byte(`{}`)), callback.ErrUnknownApp)
	require.NoError(t, d.Close(context.Background()))
	assert.Equal(t, 1, strings.Count(logs.String(), "before failed"), "only the enabled command's failure is logged: %s", logs.String())
}

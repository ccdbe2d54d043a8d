package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/sqlapps"
	"github.com/imcallback/callback/sqlapps/sqlite"
)

func TestAppsSetListDelete(t *testing.T) {
	db := filepath.Join(t.TempDir(), "apps.db")

	r := cli(t, "", "apps", "set", "--db", db, "--app", "10000", "--url", "https://app.example/callback",
		"--protocol", "tencent", "--secret", "tok-do-not-print", "--timeout", "1500ms",
		"--rule", "C2C.CallbackBeforeSendMsg=fail-closed,timeout=500ms", "--rule", "State.StateChange=disabled")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "app 10000")
	r = cli(t, "", "apps", "set", "--db", db, "--app", "20000", "--url", "http://127.0.0.1:8989/callback", "--secret", "")
	require.Equal(t, exitAllow, r.code, r.stderr)

	r = cli(t, "", "apps", "list", "--db", db, "--json")
	require.Equal(t, exitAllow, r.code, r.stderr)
	var apps []appJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &apps), r.stdout)
	assert.Equal(t, []appJSON{
		{App: 10000, URL: "https://app.example/callback", Protocol: "tencent", Secret: "set", Timeout: "1.5s",
			Rules: []string{"C2C.CallbackBeforeSendMsg=fail-closed,timeout=500ms", "State.StateChange=disabled"}},
		{App: 20000, URL: "http://127.0.0.1:8989/callback", Protocol: "seed", Secret: "none"},
	}, apps)

	r = cli(t, "", "apps", "list", "--db", db)
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "APP")
	assert.Contains(t, r.stdout, "https://app.example/callback")
	assert.NotContains(t, r.stdout+r.stderr, "tok-do-not-print", "secrets are never printed")

	// set replaces the whole app, rules included.
	r = cli(t, "", "apps", "set", "--db", db, "--app", "10000", "--url", "https://new.example/cb", "--protocol", "tencent", "--secret", "tok")
	require.Equal(t, exitAllow, r.code, r.stderr)
	r = cli(t, "", "apps", "list", "--db", db, "--json")
	var replaced []appJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &replaced))
	assert.Equal(t, "https://new.example/cb", replaced[0].URL)
	assert.Empty(t, replaced[0].Rules)

	r = cli(t, "", "apps", "delete", "--db", db, "--app", "20000")
	require.Equal(t, exitAllow, r.code, r.stderr)
	r = cli(t, "", "apps", "delete", "--db", db, "--app", "20000")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "unknown app")
}

func TestAppsRejectsBadInput(t *testing.T) {
	db := filepath.Join(t.TempDir(), "apps.db")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"apps"}, exitUsage, "Usage: imcallback apps"},
		{"unknown subcommand", []string{"apps", "purge"}, exitUsage, `unknown command "purge"`},
		{"no db", []string{"apps", "list"}, exitFailure, "--db is required"},
		{"no app", []string{"apps", "set", "--db", db, "--url", "http://h/"}, exitUsage, "--app is required"},
		{"bad URL", []string{"apps", "set", "--db", db, "--app", "1", "--url", "ftp://h/"}, exitFailure, "scheme"},
		{"bad secret", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--secret", "whsec_!!"}, exitFailure, "invalid config"},
		{"bad rule", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--rule", "x=sometimes"}, exitUsage, "unknown setting"},
		{"rule twice", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--rule", "x=disabled", "--rule", "x=fail-closed"}, exitUsage, "given twice"},
		{"bad rule timeout", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--rule", "x=timeout=soon"}, exitUsage, "not a positive duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, "", tt.args...)
			assert.Equal(t, tt.code, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
			assert.Contains(t, r.stdout+r.stderr, tt.want)
		})
	}
	r := cli(t, "", "apps", "list", "--db", db, "--json")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.JSONEq(t, `[]`, r.stdout, "a rejected set must write nothing")
}

// What apps set writes is what a Dispatcher resolving from the same file
// uses: the app's URL, protocol, secret and rules.
func TestAppsSetReachesDispatcher(t *testing.T) {
	app := callbacktest.NewServer(t, callbacktest.Config{Protocol: callback.Tencent, Secret: "tok"})
	app.On("C2C.CallbackBeforeSendMsg", callbacktest.Deny(120001, "not allowed"))
	dbPath := filepath.Join(t.TempDir(), "apps.db")
	r := cli(t, "", "apps", "set", "--db", dbPath, "--app", "1400000000", "--url", app.URL,
		"--protocol", "tencent", "--secret", "tok", "--rule", "State.StateChange=disabled")
	require.Equal(t, exitAllow, r.code, r.stderr)

	db, err := sqlite.Open(dbPath)
	require.NoError(t, err)
	defer db.Close()
	store, err := sqlapps.New(db, sqlapps.Options{})
	require.NoError(t, err)
	d, err := callback.New(callback.Config{Resolver: store, Logger: quietLogger()})
	require.NoError(t, err)
	defer d.Close(context.Background())

	resp := d.Before(context.Background(), 1400000000, "C2C.CallbackBeforeSendMsg", []byte(`{"MsgBody":[]}`))
	require.NoError(t, resp.Err)
	assert.Equal(t, callback.Deny, resp.Action)
	assert.Equal(t, 120001, resp.Code)
	calls := app.WaitN(1, 5*time.Second)
	assert.True(t, calls[0].Verified, "signed with the app's token")

	resp = d.Before(context.Background(), 1400000000, "State.StateChange", []byte(`{}`))
	assert.True(t, resp.OK())
	assert.Len(t, app.Calls(), 1, "the disabled command sends nothing")
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

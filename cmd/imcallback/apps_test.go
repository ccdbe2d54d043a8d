package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/internal/dbtest"
	"github.com/imcallback/callback/openim"
	"github.com/imcallback/callback/sqlapps"
)

// storeArgs are the flags naming a fresh database on b: --db FILE for
// SQLite, --driver and --dsn for a server.
func storeArgs(t *testing.T, b dbtest.Backend) (args []string, dsn string) {
	t.Helper()
	dsn = b.DSN(t)
	if b.Dialect == sqlapps.SQLite {
		return []string{"--db", dsn, "--create"}, dsn
	}
	return []string{"--driver", b.Driver, "--dsn", dsn}, dsn
}

// apps runs "imcallback apps SUB" on the database that store names.
func apps(t *testing.T, store []string, sub string, args ...string) result {
	t.Helper()
	return cli(t, "", append(append([]string{"apps", sub}, store...), args...)...)
}

func TestAppsSetListDelete(t *testing.T) {
	for _, b := range dbtest.All {
		t.Run(b.Name, func(t *testing.T) {
			t.Setenv("IMCALLBACK_DSN", "")
			db, dsn := storeArgs(t, b)

			r := apps(t, db, "set", "--app", "10000", "--url", "https://app.example/callback",
				"--protocol", "tencent", "--secret", "tok-do-not-print", "--timeout", "1500ms",
				"--rule", "C2C.CallbackBeforeSendMsg=fail-closed,timeout=500ms", "--rule", "State.StateChange=disabled",
				"--rule", "Group.CallbackBeforeSendMsg=shadow")
			require.Equal(t, exitAllow, r.code, r.stderr)
			assert.Contains(t, r.stdout, "app 10000")
			r = apps(t, db, "set", "--app", "20000", "--url", "http://127.0.0.1:8989/callback", "--secret", "")
			require.Equal(t, exitAllow, r.code, r.stderr)

			r = apps(t, db, "list", "--json")
			require.Equal(t, exitAllow, r.code, r.stderr)
			var list []appJSON
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), r.stdout)
			assert.Equal(t, []appJSON{
				{App: 10000, URL: "https://app.example/callback", Protocol: "tencent", Secret: "set", Timeout: "1.5s",
					Rules: []string{"C2C.CallbackBeforeSendMsg=fail-closed,timeout=500ms", "Group.CallbackBeforeSendMsg=shadow", "State.StateChange=disabled"}},
				{App: 20000, URL: "http://127.0.0.1:8989/callback", Protocol: "appcommand", Secret: "none"},
			}, list)

			r = apps(t, db, "list")
			require.Equal(t, exitAllow, r.code, r.stderr)
			assert.Contains(t, r.stdout, "APP")
			assert.Contains(t, r.stdout, "https://app.example/callback")
			assert.NotContains(t, r.stdout+r.stderr, "tok-do-not-print", "secrets are never printed")

			// set replaces the whole app, rules included.
			r = apps(t, db, "set", "--app", "10000", "--url", "https://new.example/cb", "--protocol", "tencent", "--secret", "tok")
			require.Equal(t, exitAllow, r.code, r.stderr)
			r = apps(t, db, "list", "--json")
			var replaced []appJSON
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &replaced))
			assert.Equal(t, "https://new.example/cb", replaced[0].URL)
			assert.Empty(t, replaced[0].Rules)

			r = apps(t, db, "delete", "--app", "20000")
			require.Equal(t, exitAllow, r.code, r.stderr)
			r = apps(t, db, "delete", "--app", "20000")
			assert.Equal(t, exitFailure, r.code)
			assert.Contains(t, r.stderr, "unknown app")

			// A server's --dsn defaults to $IMCALLBACK_DSN; SQLite's file
			// can be given as --dsn.
			t.Setenv("IMCALLBACK_DSN", dsn)
			by := []string{"apps", "list", "--driver", b.Driver, "--json"}
			if b.Dialect == sqlapps.SQLite {
				t.Setenv("IMCALLBACK_DSN", "postgres://u:hunter2@127.0.0.1:1/x")
				by = append(by, "--dsn", dsn)
			}
			r = cli(t, "", by...)
			require.Equal(t, exitAllow, r.code, r.stderr)
			var left []appJSON
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &left), r.stdout)
			require.Len(t, left, 1, "apps left, read through $IMCALLBACK_DSN or --dsn")
			assert.Equal(t, 10000, left[0].App)
		})
	}
}

func TestAppsRejectsBadInput(t *testing.T) {
	t.Setenv("IMCALLBACK_DSN", "")
	db := filepath.Join(t.TempDir(), "apps.db")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"apps"}, exitUsage, "Usage: imcallback apps"},
		{"unknown subcommand", []string{"apps", "purge"}, exitUsage, `unknown command "purge"`},
		{"no db", []string{"apps", "list"}, exitUsage, "--db is required"},
		{"db does not exist", []string{"apps", "list", "--db", db + ".typo"}, exitUsage, "does not exist (give --create to create it)"},
		{"no url", []string{"apps", "set", "--db", db, "--app", "1"}, exitUsage, "--url is required"},
		{"secret twice", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--secret", "a", "--secret-from-env", "HOME"}, exitUsage, "not both"},
		{"no app", []string{"apps", "set", "--db", db, "--url", "http://h/"}, exitUsage, "--app is required"},
		{"bad URL", []string{"apps", "set", "--db", db, "--app", "1", "--url", "ftp://h/"}, exitUsage, "scheme"},
		{"bad secret", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--secret", "whsec_!!"}, exitUsage, "invalid config"},
		{"bad rule", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--rule", "x=sometimes"}, exitUsage, "unknown setting"},
		{"rule twice", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--rule", "x=disabled", "--rule", "x=fail-closed"}, exitUsage, "given twice"},
		{"bad rule timeout", []string{"apps", "set", "--db", db, "--app", "1", "--url", "http://h/", "--rule", "x=timeout=soon"}, exitUsage, "not a positive duration"},
		{"unknown driver", []string{"apps", "list", "--driver", "oracle"}, exitUsage, `unknown driver "oracle"`},
		{"server without DSN", []string{"apps", "list", "--driver", "mysql"}, exitUsage, "--dsn (or $IMCALLBACK_DSN) is required"},
		{"server with a file", []string{"apps", "list", "--driver", "postgres", "--db", db}, exitUsage, "--db names a SQLite file"},
		{"bad mysql DSN", []string{"apps", "list", "--driver", "mysql", "--dsn", "u:hunter2@tcp(h"}, exitUsage, "not a valid mysql DSN"},
		{"bad postgres DSN", []string{"apps", "list", "--driver", "postgres", "--dsn", "postgres://u:hunter2@h:notaport/x"}, exitUsage, "not a valid postgres DSN"},
		{"mysql down", []string{"apps", "list", "--driver", "mysql", "--dsn", "u:hunter2@tcp(127.0.0.1:1)/x"}, exitFailure, "connection refused"},
		{"postgres down", []string{"apps", "list", "--driver", "postgres", "--dsn", "postgres://u:hunter2@127.0.0.1:1/x"}, exitFailure, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, "", tt.args...)
			assert.Equal(t, tt.code, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
			assert.Contains(t, r.stdout+r.stderr, tt.want)
			assert.NotContains(t, r.stdout+r.stderr, "hunter2", "a DSN's password")
		})
	}
	_, err := os.Stat(db)
	require.ErrorIs(t, err, os.ErrNotExist, "nothing is created without --create")
	_, err = os.Stat(db + ".typo")
	require.ErrorIs(t, err, os.ErrNotExist)
	r := cli(t, "", "apps", "list", "--db", db, "--json", "--create")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.JSONEq(t, `[]`, r.stdout, "a rejected set must write nothing")
}

// What apps set writes is what a Dispatcher resolving from the same file
// uses: the app's URL, protocol, secret and rules.
func TestAppsSetReachesDispatcher(t *testing.T) {
	for _, b := range dbtest.All {
		t.Run(b.Name, func(t *testing.T) { testAppsSetReachesDispatcher(t, b) })
	}
}

func testAppsSetReachesDispatcher(t *testing.T, b dbtest.Backend) {
	app := callbacktest.NewServer(t, callbacktest.Config{Protocol: callback.Tencent, Secret: "tok"})
	app.On("C2C.CallbackBeforeSendMsg", callbacktest.Deny(120001, "not allowed"))
	store, dsn := storeArgs(t, b)
	r := apps(t, store, "set", "--app", "1400000000", "--url", app.URL,
		"--protocol", "tencent", "--secret", "tok", "--rule", "State.StateChange=disabled")
	require.Equal(t, exitAllow, r.code, r.stderr)

	db := sql.OpenDB(b.Connector(t, dsn))
	defer db.Close()
	s, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect, QueryTimeout: 20 * time.Second}) // for a busy machine
	require.NoError(t, err)
	d, err := callback.New(callback.Config{Resolver: s, Logger: quietLogger()})
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

// A database that accepts connections and never answers fails the command
// at appsTimeout, with the connection ended.
func TestAppsDatabaseHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held, never answered
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	defer func(d time.Duration) { appsTimeout = d }(appsTimeout)
	appsTimeout = 300 * time.Millisecond
	t.Setenv("IMCALLBACK_DSN", "")
	for _, dsn := range []struct{ driver, dsn string }{
		{"mysql", "u:hunter2@tcp(" + ln.Addr().String() + ")/x"},
		{"postgres", "postgres://u:hunter2@" + ln.Addr().String() + "/x"},
	} {
		t.Run(dsn.driver, func(t *testing.T) {
			start := time.Now()
			r := cli(t, "", "apps", "list", "--driver", dsn.driver, "--dsn", dsn.dsn)
			assert.Equal(t, exitFailure, r.code, r.stderr)
			assert.Contains(t, r.stderr, "deadline exceeded")
			assert.NotContains(t, r.stderr, "hunter2")
			assert.Less(t, time.Since(start), 20*time.Second, "a 300 ms bound, not the driver's own wait on a server that never answers")
		})
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The secret is only the one given: $CALLBACK_SECRET is not read unless
// named with --secret-from-env.
func TestAppsSetSecretOnlyWhenGiven(t *testing.T) {
	db := []string{"--db", filepath.Join(t.TempDir(), "apps.db"), "--create"}
	t.Setenv("CALLBACK_SECRET", "tok-from-env")
	t.Setenv("IMCALLBACK_TEST_TOKEN", "tok-named")
	require.Equal(t, exitAllow, apps(t, db, "set", "--app", "1", "--url", "http://h/", "--protocol", "tencent").code)
	require.Equal(t, exitAllow, apps(t, db, "set", "--app", "2", "--url", "http://h/", "--protocol", "tencent", "--secret-from-env", "IMCALLBACK_TEST_TOKEN").code)
	r := apps(t, db, "list", "--json")
	require.Equal(t, exitAllow, r.code, r.stderr)
	var list []appJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	require.Len(t, list, 2)
	assert.Equal(t, "none", list[0].Secret, "$CALLBACK_SECRET is not picked up silently")
	assert.Equal(t, "set", list[1].Secret)
	r = apps(t, db, "set", "--app", "3", "--url", "http://h/", "--secret-from-env", "IMCALLBACK_TEST_UNSET")
	assert.Equal(t, exitUsage, r.code)
}

// TestAppsProtocolOpenIM: apps set --protocol openim stores it, list
// prints it, and the stored app's callbacks go out in OpenIM's format.
func TestAppsProtocolOpenIM(t *testing.T) {
	t.Setenv("IMCALLBACK_DSN", "")
	db, _ := storeArgs(t, dbtest.SQLite)
	backend := callbacktest.NewServer(t, callbacktest.Config{Protocol: callback.OpenIM})
	r := apps(t, db, "set", "--app", "30000", "--url", backend.URL, "--protocol", "openim")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "(openim)")
	r = apps(t, db, "list", "--json")
	require.Equal(t, exitAllow, r.code, r.stderr)
	var list []appJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), r.stdout)
	require.Len(t, list, 1)
	assert.Equal(t, "openim", list[0].Protocol)

	// send with the protocol apps printed: OpenIM's default command, by path.
	r = cli(t, "", "send", "--url", backend.URL, "--protocol", list[0].Protocol, "--body", `{"text":"hi"}`)
	require.Equal(t, exitAllow, r.code, r.stdout+r.stderr)
	c := backend.WaitFor(10*time.Second, callbacktest.Command(openim.BeforeSendSingleMsg))
	assert.JSONEq(t, `{"text":"hi"}`, string(c.Body))
}

// TestAppsDisableEnable: apps disable stores the state, list shows it,
// Set keeps it, enable clears it; an unknown app fails.
func TestAppsDisableEnable(t *testing.T) {
	b := dbtest.All[0] // SQLite: the command's code is the same on every database
	t.Setenv("IMCALLBACK_DSN", "")
	db, _ := storeArgs(t, b)
	r := apps(t, db, "set", "--app", "7", "--url", "https://app.example/callback")
	require.Equal(t, exitAllow, r.code, r.stderr)

	r = apps(t, db, "disable", "--app", "7")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "app 7 disabled")
	list := func() []appJSON {
		r := apps(t, db, "list", "--json")
		require.Equal(t, exitAllow, r.code, r.stderr)
		var l []appJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &l), r.stdout)
		return l
	}
	assert.True(t, list()[0].Disabled)
	r = apps(t, db, "list")
	assert.Contains(t, r.stdout, "disabled")
	r = apps(t, db, "set", "--app", "7", "--url", "https://app.example/v2")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.True(t, list()[0].Disabled, "set keeps the state")

	r = apps(t, db, "enable", "--app", "7")
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.False(t, list()[0].Disabled)

	r = apps(t, db, "disable", "--app", "8")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "unknown app")
	r = apps(t, db, "enable")
	assert.Equal(t, exitUsage, r.code)
}

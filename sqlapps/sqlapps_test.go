package sqlapps_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/dbtest"
	"github.com/imcallback/callback/sqlapps"
	"github.com/imcallback/callback/sqlapps/sqlite"
	"github.com/imcallback/callback/tencent"
)

// seedSecret is a valid Standard Webhooks secret.
var seedSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// countingConnector opens real connections to one of the tested databases
// and counts the statements that read apps, so tests can tell a cache hit
// (no query) from a miss.
type countingConnector struct {
	driver.Connector
	reads *atomic.Int64
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: conn, reads: c.reads}, nil
}

// countingConn hides the driver's direct Exec and Query, so database/sql
// prepares every statement it runs, where it is counted; it forwards the
// context-aware Prepare and BeginTx.
type countingConn struct {
	driver.Conn
	reads *atomic.Int64
}

func (c countingConn) count(query string) {
	if strings.HasPrefix(query, "SELECT a.app_id") {
		c.reads.Add(1)
	}
}

func (c countingConn) Prepare(query string) (driver.Stmt, error) {
	c.count(query)
	return c.Conn.Prepare(query)
}

func (c countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	c.count(query)
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

func (c countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	//lint:ignore SA1019 the driver has nothing else
	return c.Conn.Begin()
}

// eachDB runs test once per tested database, as parallel subtests named
// after them (each has its own database).
func eachDB(t *testing.T, test func(t *testing.T, b dbtest.Backend)) {
	for _, b := range dbtest.All {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, b)
		})
	}
}

// newDB opens a fresh, empty database on b, with the counted reads of
// apps.
func newDB(t *testing.T, b dbtest.Backend) (*sql.DB, *atomic.Int64) {
	t.Helper()
	reads := &atomic.Int64{}
	db := sql.OpenDB(countingConnector{Connector: b.Connector(t, b.DSN(t)), reads: reads})
	t.Cleanup(func() { _ = db.Close() })
	return db, reads
}

// newStore returns a migrated Store on a fresh database on b.
func newStore(t *testing.T, b dbtest.Backend, opts sqlapps.Options) (*sqlapps.Store, *sql.DB, *atomic.Int64) {
	t.Helper()
	db, reads := newDB(t, b)
	opts.Dialect = b.Dialect
	if opts.QueryTimeout == 0 {
		// Not the 1 s default: a server on a busy machine can take longer,
		// and the tests that are about QueryTimeout set it.
		opts.QueryTimeout = 20 * time.Second
	}
	s, err := sqlapps.New(db, opts)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	return s, db, reads
}

// tableExists reports whether the test's database has table name.
func tableExists(t *testing.T, b dbtest.Backend, db *sql.DB, name string) bool {
	t.Helper()
	q := `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`
	switch b.Dialect {
	case sqlapps.SQLite:
		q = `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	case sqlapps.Postgres:
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`
	}
	var n int
	require.NoError(t, db.QueryRow(q, name).Scan(&n))
	return n == 1
}

// clock is a settable clock for the cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestMigrate(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, db, _ := newStore(t, b, sqlapps.Options{})
		ctx := context.Background()
		require.NoError(t, s.Migrate(ctx), "a second Migrate must change nothing")

		var versions, latest int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*), MAX(version) FROM imcallback_schema`).Scan(&versions, &latest))
		assert.Equal(t, 4, versions, "version rows")
		assert.Equal(t, 4, latest, "schema version")
		for _, table := range []string{"imcallback_apps", "imcallback_app_commands"} {
			assert.True(t, tableExists(t, b, db, table), "table %s", table)
		}

		_, err := db.Exec(`INSERT INTO imcallback_schema (version) VALUES (99)`)
		require.NoError(t, err)
		err = s.Migrate(ctx)
		require.Error(t, err, "a schema newer than the package")
		assert.Contains(t, err.Error(), "newer")
	})
}

// A database made by schema version 1 (the only one before MySQLText) is
// brought up to date with its rows kept.
func TestMigrateFromVersion1(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		db, _ := newDB(t, b)
		ctx := context.Background()
		for _, stmt := range strings.Split(sqlapps.Schema, ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			_, err := db.ExecContext(ctx, stmt)
			require.NoError(t, err)
		}
		for _, stmt := range []string{
			`CREATE TABLE imcallback_schema (version INTEGER NOT NULL)`,
			`INSERT INTO imcallback_schema (version) VALUES (1)`,
			`INSERT INTO imcallback_apps (app_id, url, protocol, secret, timeout_ms) VALUES (7, 'http://a.example/cb', 'tencent', 'tok', 1500)`,
			`INSERT INTO imcallback_app_commands (app_id, command, disabled, fail_closed, timeout_ms) VALUES (7, 'msg.send', TRUE, FALSE, 0)`,
		} {
			_, err := db.ExecContext(ctx, stmt)
			require.NoError(t, err, stmt)
		}
		s, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect})
		require.NoError(t, err)
		require.NoError(t, s.Migrate(ctx))
		var latest int
		require.NoError(t, db.QueryRow(`SELECT MAX(version) FROM imcallback_schema`).Scan(&latest))
		assert.Equal(t, 4, latest, "schema version")
		want := sqlapps.App{ID: 7, Endpoint: callback.Endpoint{URL: "http://a.example/cb", Protocol: callback.Tencent,
			Secret: "tok", Timeout: 1500 * time.Millisecond, Commands: map[string]callback.Rule{"msg.send": {Disabled: true}}}}
		got, err := s.Get(ctx, 7)
		require.NoError(t, err)
		assert.Equal(t, want, got, "the app made under version 1")

		want.Endpoint.Commands["MSG.SEND"] = callback.Rule{FailClosed: true}
		require.NoError(t, s.Set(ctx, want), "commands that differ by case, after the upgrade")
		got, err = s.Get(ctx, 7)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
}

// Migrate is safe to run from several processes at once: each one here has
// its own connection pool on the same fresh database.
func TestMigrateConcurrent(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		dsn := b.DSN(t)
		const processes = 4
		stores := make([]*sqlapps.Store, processes)
		dbs := make([]*sql.DB, processes)
		for i := range stores {
			db := sql.OpenDB(b.Connector(t, dsn))
			t.Cleanup(func() { _ = db.Close() })
			dbs[i] = db
			s, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect})
			require.NoError(t, err)
			stores[i] = s
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errs := make([]error, processes)
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() { errs[i] = s.Migrate(ctx) })
		}
		wg.Wait()
		for i, err := range errs {
			assert.NoError(t, err, "process %d's Migrate", i)
		}
		var versions, latest int
		require.NoError(t, dbs[0].QueryRow(`SELECT COUNT(*), MAX(version) FROM imcallback_schema`).Scan(&versions, &latest))
		assert.Equal(t, 4, versions, "version rows: each version is applied once")
		assert.Equal(t, 4, latest, "schema version")
		require.NoError(t, stores[0].Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: "http://a.example/cb"}}))
	})
}

func TestSetGetListDelete(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, db, _ := newStore(t, b, sqlapps.Options{})
		ctx := context.Background()
		one := sqlapps.App{ID: 1400000001, Endpoint: callback.Endpoint{
			URL: "https://one.example/cb?region=eu", Protocol: callback.Tencent, Secret: "token-1",
			Timeout: 1500 * time.Millisecond,
			Commands: map[string]callback.Rule{
				tencent.C2CBeforeSendMsg:   {FailClosed: true, Timeout: 300 * time.Millisecond},
				tencent.C2CAfterSendMsg:    {Disabled: true},
				tencent.GroupBeforeSendMsg: {Shadow: true},
			},
		}}
		two := sqlapps.App{ID: 2, Endpoint: callback.Endpoint{URL: "http://two.example/cb", Secret: seedSecret}}
		require.NoError(t, s.Set(ctx, two))
		require.NoError(t, s.Set(ctx, one))

		got, err := s.Get(ctx, one.ID)
		require.NoError(t, err)
		assert.Equal(t, one, got, "an app read back")
		list, err := s.List(ctx)
		require.NoError(t, err)
		assert.Equal(t, []sqlapps.App{two, one}, list, "apps ordered by ID")

		// Set replaces the whole app, rules included.
		one.Endpoint.Commands = map[string]callback.Rule{"other": {Disabled: true}}
		one.Endpoint.Protocol = callback.AppCommand
		one.Endpoint.Secret = ""
		require.NoError(t, s.Set(ctx, one))
		got, err = s.Get(ctx, one.ID)
		require.NoError(t, err)
		assert.Equal(t, one, got, "an app replaced")
		var rules int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM imcallback_app_commands`).Scan(&rules))
		assert.Equal(t, 1, rules, "rules left after the replacement")

		require.NoError(t, s.Delete(ctx, one.ID))
		_, err = s.Get(ctx, one.ID)
		assert.ErrorIs(t, err, callback.ErrUnknownApp, "a deleted app")
		assert.ErrorIs(t, s.Delete(ctx, one.ID), callback.ErrUnknownApp, "deleting it again")
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM imcallback_app_commands`).Scan(&rules))
		assert.Zero(t, rules, "rules left after the delete")
	})
}

// TestProtocolColumn: every built-in protocol is stored as its text form
// and read back, OpenIM's as "openim".
func TestProtocolColumn(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, db, _ := newStore(t, b, sqlapps.Options{})
		ctx := context.Background()
		protocols := []callback.Protocol{callback.AppCommand, callback.Tencent, callback.OpenIM}
		for i, p := range protocols {
			a := sqlapps.App{ID: i + 1, Endpoint: callback.Endpoint{URL: "http://x/cb", Protocol: p}}
			require.NoError(t, s.Set(ctx, a))
			got, err := s.Get(ctx, a.ID)
			require.NoError(t, err)
			assert.Equal(t, p, got.Endpoint.Protocol, "%s read back", p)
		}
		rows, err := db.Query(`SELECT protocol FROM imcallback_apps ORDER BY app_id`)
		require.NoError(t, err)
		defer rows.Close()
		var stored []string
		for rows.Next() {
			var p string
			require.NoError(t, rows.Scan(&p))
			stored = append(stored, p)
		}
		require.NoError(t, rows.Err())
		assert.Equal(t, []string{"appcommand", "tencent", "openim"}, stored)
	})
}

// Commands are told apart exactly, as the Dispatcher tells them apart, on
// every database: by case, by trailing spaces, in any script; URLs and
// secrets come back byte for byte.
func TestSetKeepsTextExact(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, _, _ := newStore(t, b, sqlapps.Options{})
		ctx := context.Background()
		a := sqlapps.App{ID: 1, Endpoint: callback.Endpoint{
			URL:      "https://app.example/回调/😀?q=é",
			Protocol: callback.Tencent,
			Secret:   "tok-😀-é",
			Commands: map[string]callback.Rule{
				"msg.send":   {Disabled: true},
				"MSG.SEND":   {FailClosed: true},
				"msg.send ":  {Timeout: time.Second},
				"消息.发送":      {Disabled: true, FailClosed: true},
				"emoji.😀":    {Timeout: 2 * time.Second},
				"Straße.ß":   {Disabled: true},
				"strasse.ss": {FailClosed: true},
			},
		}}
		require.NoError(t, s.Set(ctx, a))
		got, err := s.Get(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, a, got, "the app read back")
		ep, err := s.Resolve(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, a.Endpoint, ep, "the app resolved")
	})
}

// App IDs and timeouts keep their full range on every database, and List
// orders IDs as numbers.
func TestSetKeepsNumbers(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, _, _ := newStore(t, b, sqlapps.Options{})
		ctx := context.Background()
		var want []sqlapps.App
		for _, id := range []int{math.MinInt64, -1, 0, 9, 10, 1 << 40, math.MaxInt64} {
			a := sqlapps.App{ID: id, Endpoint: callback.Endpoint{URL: "http://a.example/cb", Timeout: 24 * time.Hour,
				Commands: map[string]callback.Rule{"c": {Timeout: time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond}}}}
			require.NoError(t, s.Set(ctx, a))
			want = append(want, a)
			ep, err := s.Resolve(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, a.Endpoint, ep, "app %d", id)
		}
		list, err := s.List(ctx)
		require.NoError(t, err)
		assert.Equal(t, want, list, "apps ordered by ID")
	})
}

// Sets and Deletes of one app from several writers at once all succeed, on
// every database, and leave one writer's app whole (its row and its own
// rules) or none.
func TestSetConcurrent(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, _, _ := newStore(t, b, sqlapps.Options{})
		ctx := context.Background()
		const writers, rounds = 6, 5
		app := func(w int) sqlapps.App {
			return sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: fmt.Sprintf("http://w%d.example/cb", w),
				Commands: map[string]callback.Rule{fmt.Sprintf("cmd.%d", w): {Disabled: true}, "shared": {Timeout: time.Duration(w+1) * time.Second}}}}
		}
		var wg sync.WaitGroup
		errs := make(chan error, (writers+3)*rounds)
		for w := range writers {
			wg.Go(func() {
				for range rounds {
					errs <- s.Set(ctx, app(w))
				}
			})
		}
		wg.Go(func() {
			for range rounds {
				if err := s.Delete(ctx, 1); !errors.Is(err, callback.ErrUnknownApp) {
					errs <- err
				}
			}
		})
		wg.Wait()
		require.NoError(t, s.Set(ctx, app(0)), "a Set after the others")
		for range rounds {
			wg.Go(func() { errs <- s.Set(ctx, app(1)) })
			wg.Go(func() {
				if err := s.Delete(ctx, 1); !errors.Is(err, callback.ErrUnknownApp) {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err)
		}
		got, err := s.Get(ctx, 1)
		if errors.Is(err, callback.ErrUnknownApp) {
			return // a Delete was last
		}
		require.NoError(t, err)
		var w int
		_, err = fmt.Sscanf(got.Endpoint.URL, "http://w%d.example/cb", &w)
		require.NoError(t, err, got.Endpoint.URL)
		assert.Equal(t, app(w), got, "one writer's app, whole")
	})
}

func TestSetRejectsInvalidApps(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, db, _ := newStore(t, b, sqlapps.Options{})
		ctx := context.Background()
		tests := []struct {
			name string
			ep   callback.Endpoint
		}{
			{"no URL", callback.Endpoint{}},
			{"not http", callback.Endpoint{URL: "gopher://x/cb"}},
			{"bad seed secret", callback.Endpoint{URL: "http://x/cb", Secret: "whsec_tooshort"}},
			{"OpenIM secret not whsec_", callback.Endpoint{URL: "http://x/cb", Protocol: callback.OpenIM, Secret: "token"}},
			{"sub-millisecond timeout", callback.Endpoint{URL: "http://x/cb", Timeout: 1500 * time.Microsecond}},
			{"sub-millisecond rule timeout", callback.Endpoint{URL: "http://x/cb", Commands: map[string]callback.Rule{"c": {Timeout: time.Nanosecond}}}},
			{"empty command", callback.Endpoint{URL: "http://x/cb", Commands: map[string]callback.Rule{"": {}}}},
			{"command too long", callback.Endpoint{URL: "http://x/cb", Commands: map[string]callback.Rule{strings.Repeat("é", 192): {}}}},
			{"command not UTF-8", callback.Endpoint{URL: "http://x/cb", Commands: map[string]callback.Rule{"msg.\xff": {}}}},
			{"command with NUL", callback.Endpoint{URL: "http://x/cb", Commands: map[string]callback.Rule{"msg.\x00": {}}}},
			{"URL not UTF-8", callback.Endpoint{URL: "http://x/cb\xff"}},
			{"secret not UTF-8", callback.Endpoint{URL: "http://x/cb", Protocol: callback.Tencent, Secret: "tok\xff"}},
			{"secret with NUL", callback.Endpoint{URL: "http://x/cb", Protocol: callback.Tencent, Secret: "tok\x00"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := s.Set(ctx, sqlapps.App{ID: 1, Endpoint: tt.ep})
				assert.ErrorIs(t, err, callback.ErrInvalidConfig)
				var n int
				require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM imcallback_apps`).Scan(&n))
				assert.Zero(t, n, "rows written")
			})
		}

		// An Encrypt that returns raw bytes, not text.
		raw, _, _ := newStore(t, b, sqlapps.Options{Encrypt: func(context.Context, int, string) (string, error) {
			return "\x00\xfe\xffsealed", nil
		}})
		err := raw.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: "http://x/cb", Protocol: callback.Tencent, Secret: "tok"}})
		assert.ErrorIs(t, err, callback.ErrInvalidConfig)
		assert.ErrorContains(t, err, "Encrypt")
		assert.NotContains(t, err.Error(), "sealed", "the stored secret in the error")
	})
}

func TestResolveCache(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		clk := &clock{now: time.Unix(1700000000, 0)}
		s, db, reads := newStore(t, b, sqlapps.Options{TTL: time.Minute})
		sqlapps.SetClock(s, clk.Now)
		ctx := context.Background()
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: "http://a.example/cb"}}))

		for range 100 {
			ep, err := s.Resolve(ctx, 1)
			require.NoError(t, err)
			require.Equal(t, "http://a.example/cb", ep.URL)
		}
		assert.Equal(t, int64(1), reads.Load(), "reads for 100 resolutions of one app")

		for range 100 {
			_, err := s.Resolve(ctx, 404)
			require.ErrorIs(t, err, callback.ErrUnknownApp)
		}
		assert.Equal(t, int64(2), reads.Load(), "an unknown app is cached too")

		// Another process changes the row: seen after the TTL, not before.
		_, err := db.Exec(`UPDATE imcallback_apps SET url = 'http://b.example/cb' WHERE app_id = 1`)
		require.NoError(t, err)
		clk.Add(59 * time.Second)
		ep, err := s.Resolve(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, "http://a.example/cb", ep.URL, "within the TTL")
		clk.Add(2 * time.Second)
		ep, err = s.Resolve(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, "http://b.example/cb", ep.URL, "after the TTL")
		assert.Equal(t, int64(3), reads.Load(), "reads")

		// Explicit invalidation.
		_, err = db.Exec(`UPDATE imcallback_apps SET url = 'http://c.example/cb' WHERE app_id = 1`)
		require.NoError(t, err)
		s.Invalidate(1)
		ep, err = s.Resolve(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, "http://c.example/cb", ep.URL, "after Invalidate")

		_, err = db.Exec(`UPDATE imcallback_apps SET url = 'http://d.example/cb' WHERE app_id = 1`)
		require.NoError(t, err)
		s.InvalidateAll()
		ep, err = s.Resolve(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, "http://d.example/cb", ep.URL, "after InvalidateAll")

		// Set and Delete through the Store invalidate by themselves.
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: "http://e.example/cb"}}))
		ep, err = s.Resolve(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, "http://e.example/cb", ep.URL, "after Set")
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 404, Endpoint: callback.Endpoint{URL: "http://f.example/cb"}}))
		_, err = s.Resolve(ctx, 404)
		assert.NoError(t, err, "an app once unknown, after Set")
		require.NoError(t, s.Delete(ctx, 1))
		_, err = s.Resolve(ctx, 1)
		assert.ErrorIs(t, err, callback.ErrUnknownApp, "after Delete")
	})
}

func TestResolveWithoutCache(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, _, reads := newStore(t, b, sqlapps.Options{TTL: -1})
		ctx := context.Background()
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: "http://a.example/cb"}}))
		for range 5 {
			_, err := s.Resolve(ctx, 1)
			require.NoError(t, err)
		}
		assert.Equal(t, int64(5), reads.Load(), "reads with the cache off: the counter itself must count")
	})
}

func TestResolveConcurrent(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, _, reads := newStore(t, b, sqlapps.Options{TTL: time.Hour})
		ctx := context.Background()
		urls := map[string]bool{}
		for app := range 10 {
			for v := range 2 {
				urls[fmt.Sprintf("http://app%d-v%d.example/cb", app, v)] = true
			}
			require.NoError(t, s.Set(ctx, sqlapps.App{ID: app, Endpoint: callback.Endpoint{URL: fmt.Sprintf("http://app%d-v0.example/cb", app)}}))
		}

		var wg sync.WaitGroup
		var (
			mu  sync.Mutex // guards bad
			bad []string
		)
		report := func(what string) {
			mu.Lock()
			defer mu.Unlock()
			bad = append(bad, what)
		}
		for g := range 16 {
			wg.Go(func() {
				for i := range 200 {
					app := (g + i) % 11 // app 10 is unknown
					ep, err := s.Resolve(ctx, app)
					switch {
					case app == 10 && errors.Is(err, callback.ErrUnknownApp):
					case err != nil:
						report(err.Error())
					case !urls[ep.URL]:
						report("URL never set: " + ep.URL)
					}
				}
			})
		}
		wg.Go(func() {
			for i := range 20 {
				app := i % 10
				if err := s.Set(ctx, sqlapps.App{ID: app, Endpoint: callback.Endpoint{URL: fmt.Sprintf("http://app%d-v%d.example/cb", app, i%2)}}); err != nil {
					report(err.Error())
				}
				s.InvalidateAll()
			}
		})
		wg.Wait()
		assert.Empty(t, bad, "resolutions with an error or a URL never set")
		assert.Less(t, reads.Load(), int64(16*200), "reads: the cache must answer most of the 3,200 resolutions")
		for app := range 10 {
			want, err := s.Get(ctx, app)
			require.NoError(t, err)
			got, err := s.Resolve(ctx, app)
			require.NoError(t, err)
			assert.Equal(t, want.Endpoint, got, "app %d: the cache must end on the last Set", app)
		}
	})
}

func TestResolveDatabaseDown(t *testing.T) {
	ctx := context.Background()
	// Databases that cannot be reached: a file in a missing directory, a
	// port nothing listens on.
	unreachable := map[string]string{
		dbtest.SQLite.Name:   filepath.Join(t.TempDir(), "missing-dir", "apps.db"),
		dbtest.MariaDB.Name:  "imcallback:imcallback@tcp(127.0.0.1:1)/imcallback?timeout=5s",
		dbtest.Postgres.Name: "postgres://imcallback:imcallback@127.0.0.1:1/imcallback?sslmode=disable&connect_timeout=5",
	}
	for _, b := range dbtest.All {
		t.Run(b.Name+"/never reached", func(t *testing.T) {
			db := sql.OpenDB(b.Connector(t, unreachable[b.Name]))
			t.Cleanup(func() { _ = db.Close() })
			s, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect})
			require.NoError(t, err)
			_, err = s.Resolve(ctx, 1)
			require.Error(t, err)
			assert.NotErrorIs(t, err, callback.ErrUnknownApp, "a database that is down is not an unknown app")
		})
	}
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		// Closed after reads: the last endpoint is served.
		clk := &clock{now: time.Unix(1700000000, 0)}
		s, db, reads := newStore(t, b, sqlapps.Options{TTL: time.Minute})
		sqlapps.SetClock(s, clk.Now)
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: "http://a.example/cb"}}))
		_, err := s.Resolve(ctx, 1)
		require.NoError(t, err)
		_, err = s.Resolve(ctx, 2)
		require.ErrorIs(t, err, callback.ErrUnknownApp)
		require.NoError(t, db.Close())

		clk.Add(2 * time.Minute)
		ep, err := s.Resolve(ctx, 1)
		require.NoError(t, err, "a stale endpoint beats none while the database is down")
		assert.Equal(t, "http://a.example/cb", ep.URL)
		_, err = s.Resolve(ctx, 1)
		require.NoError(t, err)
		_, err = s.Resolve(ctx, 2)
		assert.ErrorIs(t, err, callback.ErrUnknownApp, "a stale unknown app stays unknown")
		_, err = s.Resolve(ctx, 3)
		assert.ErrorContains(t, err, "database is closed", "an app never read")
		assert.Equal(t, int64(2), reads.Load(), "reads that reached the database (the others failed before it)")
	})
}

func TestDispatcherWithStore(t *testing.T) {
	eachDB(t, func(t *testing.T, be dbtest.Backend) {
		a := newApp(t, "")
		b := newApp(t, "")
		s, db, _ := newStore(t, be, sqlapps.Options{})
		ctx := context.Background()
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: a.URL}}))
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 2, Endpoint: callback.Endpoint{URL: b.URL,
			Commands: map[string]callback.Rule{"quiet": {Disabled: true}}}}))
		d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler),
			Commands: map[string]callback.Rule{"guarded": {FailClosed: true}}})
		require.NoError(t, err)
		defer func() { _ = d.Close(ctx) }()

		require.NoError(t, d.Before(ctx, 1, "cmd", []byte(`{}`)).Err)
		require.NoError(t, d.Before(ctx, 2, "cmd", []byte(`{}`)).Err)
		require.NoError(t, d.Before(ctx, 2, "quiet", []byte(`{}`)).Err)
		assert.Equal(t, int64(1), a.calls.Load(), "app 1's backend")
		assert.Equal(t, int64(1), b.calls.Load(), "app 2's backend: its disabled command sends nothing")

		// Moving app 1 through the Store applies on the next call.
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: b.URL}}))
		require.NoError(t, d.Before(ctx, 1, "cmd", []byte(`{}`)).Err)
		assert.Equal(t, int64(2), b.calls.Load(), "app 1 moved to b")

		r := d.Before(ctx, 3, "cmd", []byte(`{}`))
		assert.ErrorIs(t, r.Err, callback.ErrUnknownApp)
		assert.ErrorIs(t, d.After(ctx, 3, "cmd", []byte(`{}`)), callback.ErrUnknownApp)

		// The database goes down: apps in the cache still work; an app not
		// yet read fails open (or closed, by its rule) with a clear error, and
		// After reports it. Nothing panics.
		require.NoError(t, db.Close())
		require.NoError(t, d.Before(ctx, 2, "cmd", []byte(`{}`)).Err, "a cached app")
		r = d.Before(ctx, 4, "cmd", []byte(`{}`))
		assert.Equal(t, callback.Allow, r.Action, "fail open: got %v", r.Action)
		assert.ErrorIs(t, r.Err, callback.ErrResolve)
		assert.ErrorContains(t, r.Err, "database is closed")
		r = d.Before(ctx, 4, "guarded", []byte(`{}`))
		assert.Equal(t, callback.Deny, r.Action, "fail closed by Config.Commands: got %v", r.Action)
		err = d.After(ctx, 4, "cmd", []byte(`{}`))
		assert.ErrorIs(t, err, callback.ErrResolve)
		assert.ErrorContains(t, err, "database is closed")
	})
}

// app is a real App backend that checks Tencent's Sign when given a token.
type app struct {
	*httptest.Server
	calls  atomic.Int64
	signed atomic.Int64
}

func newApp(t *testing.T, token string) *app {
	t.Helper()
	a := &app{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		q := r.URL.Query()
		if token != "" {
			sum := sha256.Sum256([]byte(token + q.Get("RequestTime")))
			if q.Get("Sign") != hex.EncodeToString(sum[:]) {
				http.Error(w, "bad sign", http.StatusUnauthorized)
				return
			}
			a.signed.Add(1)
			_, _ = io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)
			return
		}
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
	}))
	t.Cleanup(a.Close)
	return a
}

// gcm is AES-256-GCM with a key held outside the database, for the
// Encrypt and Decrypt hooks: nonce || ciphertext, base64.
type gcm struct{ aead cipher.AEAD }

func newGCM(t *testing.T) *gcm {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	require.NoError(t, err)
	aead, err := cipher.NewGCM(block)
	require.NoError(t, err)
	return &gcm{aead}
}

func (g *gcm) encrypt(_ context.Context, appID int, secret string) (string, error) {
	nonce := make([]byte, g.aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := g.aead.Seal(nonce, nonce, []byte(secret), []byte(fmt.Sprint(appID)))
	return base64.StdEncoding.EncodeToString(sealed), nil
}

func (g *gcm) decrypt(_ context.Context, appID int, stored string) (string, error) {
	sealed, err := base64.StdEncoding.DecodeString(stored)
	if err != nil || len(sealed) < g.aead.NonceSize() {
		return "", errors.New("not a sealed secret")
	}
	n := g.aead.NonceSize()
	plain, err := g.aead.Open(nil, sealed[:n], sealed[n:], []byte(fmt.Sprint(appID)))
	if err != nil {
		return "", errors.New("secret does not open with this key")
	}
	return string(plain), nil
}

func TestSecretsEncryptedAtRest(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		const token = "tencent-token-PLAINTEXT"
		backend := newApp(t, token)
		g := newGCM(t)
		s, db, _ := newStore(t, b, sqlapps.Options{Encrypt: g.encrypt, Decrypt: g.decrypt})
		ctx := context.Background()
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: backend.URL, Protocol: callback.Tencent, Secret: token}}))

		var stored string
		require.NoError(t, db.QueryRow(`SELECT secret FROM imcallback_apps WHERE app_id = 1`).Scan(&stored))
		assert.NotContains(t, stored, "PLAINTEXT", "the secret at rest")
		got, err := s.Get(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, token, got.Endpoint.Secret, "Get decrypts")

		d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		defer func() { _ = d.Close(ctx) }()
		require.NoError(t, d.Before(ctx, 1, "C2C.CallbackBeforeSendMsg", []byte(`{}`)).Err)
		assert.Equal(t, int64(1), backend.signed.Load(), "requests signed with the decrypted token")

		// A row that does not decrypt (moved from another app, or another key)
		// fails that app's resolution, without the secret in the error.
		_, err = db.Exec(`UPDATE imcallback_apps SET app_id = 2 WHERE app_id = 1`)
		require.NoError(t, err)
		_, err = s.Resolve(ctx, 2)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), stored)
		assert.NotContains(t, err.Error(), "PLAINTEXT")
	})
}

func TestNewRejects(t *testing.T) {
	db, _ := newDB(t, dbtest.SQLite)
	_, err := sqlapps.New(nil, sqlapps.Options{})
	assert.Error(t, err, "nil db")
	_, err = sqlapps.New(db, sqlapps.Options{Dialect: 9})
	assert.Error(t, err, "unknown dialect")
	_, err = sqlapps.New(db, sqlapps.Options{QueryTimeout: -1})
	assert.Error(t, err, "negative QueryTimeout")
	_, err = sqlite.Open("apps.db?mode=ro")
	assert.Error(t, err, "a path with a query")
}

func TestRebind(t *testing.T) {
	const q = `INSERT INTO t (a, b, c) VALUES (?, ?, ?)`
	assert.Equal(t, q, sqlapps.Rebind(sqlapps.SQLite, q))
	assert.Equal(t, q, sqlapps.Rebind(sqlapps.MySQL, q))
	assert.Equal(t, `INSERT INTO t (a, b, c) VALUES ($1, $2, $3)`, sqlapps.Rebind(sqlapps.Postgres, q))
}

// TestSetDisabled: a disabled app resolves with Endpoint.Disabled, so a
// Dispatcher sends it nothing; Set keeps the state; enabled again, it is
// called; an unknown app is ErrUnknownApp.
func TestSetDisabled(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		s, _, _ := newStore(t, b, sqlapps.Options{})
		ctx := context.Background()
		var hits atomic.Int32
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hits.Add(1)
			_, _ = w.Write([]byte(`{"code":200,"msg":"success"}`))
		}))
		t.Cleanup(app.Close)
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: app.URL}}))
		require.NoError(t, s.SetDisabled(ctx, 1, true))
		err := s.SetDisabled(ctx, 2, true)
		assert.ErrorIs(t, err, callback.ErrUnknownApp, "got %v", err)

		got, err := s.Get(ctx, 1)
		require.NoError(t, err)
		assert.True(t, got.Endpoint.Disabled)
		require.NoError(t, s.Set(ctx, got), "Set keeps the state")
		got, err = s.Get(ctx, 1)
		require.NoError(t, err)
		assert.True(t, got.Endpoint.Disabled, "after Set")

		d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		defer func() { require.NoError(t, d.Close(ctx)) }()
		r := d.Before(ctx, 1, "msg", []byte(`{}`))
		assert.ErrorIs(t, r.Err, callback.ErrEndpointDisabled)
		assert.Zero(t, hits.Load(), "a disabled app is sent nothing")

		require.NoError(t, s.SetDisabled(ctx, 1, false))
		assert.NoError(t, d.Before(ctx, 1, "msg", []byte(`{}`)).Err)
		assert.Equal(t, int32(1), hits.Load())
	})
}

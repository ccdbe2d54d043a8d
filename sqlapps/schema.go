package sqlapps

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/imcallback/callback"
)

// Dialect is the SQL dialect of the database: it decides the query
// placeholders, the upsert's syntax, how Migrate locks, and whether
// MySQLText applies. The schema and the other queries are the same on
// every supported database.
type Dialect int

const (
	// SQLite uses ? placeholders. The zero value.
	SQLite Dialect = iota
	// Postgres uses $1, $2, ... placeholders (github.com/jackc/pgx/v5/stdlib,
	// github.com/lib/pq).
	Postgres
	// MySQL uses ? placeholders (github.com/go-sql-driver/mysql; MySQL 8 or
	// MariaDB 10.5 and later).
	MySQL
)

// String returns "sqlite", "postgres" or "mysql".
func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	case MySQL:
		return "mysql"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// Schema is the schema that Migrate creates first (version 1; versions 2
// and 3 are MySQLText and ShadowRules), as SQL that runs unchanged on
// SQLite, PostgreSQL and MySQL (on MySQL, Migrate then runs MySQLText). One
// row of imcallback_apps per app; one row of imcallback_app_commands per
// command whose rule an app overrides (callback.Config.Commands' rule
// applies to the others). Timeouts are in milliseconds, 0 meaning the
// default; protocol is "appcommand" (or "seed", its first name),
// "tencent", "openim" or the name of a format registered with
// format.Register (at most 16 bytes); secret is stored as Store.Set is given it (see
// Options.Encrypt), "" meaning unsigned.
const Schema = `CREATE TABLE IF NOT EXISTS imcallback_apps (
    app_id     BIGINT      NOT NULL PRIMARY KEY,
    url        TEXT        NOT NULL,
    protocol   VARCHAR(16) NOT NULL,
    secret     TEXT        NOT NULL,
    timeout_ms BIGINT      NOT NULL
);
CREATE TABLE IF NOT EXISTS imcallback_app_commands (
    app_id      BIGINT       NOT NULL,
    command     VARCHAR(191) NOT NULL,
    disabled    BOOLEAN      NOT NULL,
    fail_closed BOOLEAN      NOT NULL,
    timeout_ms  BIGINT       NOT NULL,
    PRIMARY KEY (app_id, command),
    FOREIGN KEY (app_id) REFERENCES imcallback_apps (app_id) ON DELETE CASCADE
);`

// MySQLText is schema version 2 on MySQL and MariaDB (a no-op elsewhere).
// Their text columns take the server's default character set, perhaps
// latin1, which cannot hold every URL, secret or command, and compare by a
// collation that by default ignores case and trailing spaces (and, on
// MySQL 8, accents), where the Dispatcher tells commands apart byte for
// byte: "msg.send" and "MSG.SEND" would be one primary key. The tables
// become utf8mb4 with a binary collation, and command the bytes of its
// UTF-8 (191 characters of up to 4 bytes), compared exactly.
const MySQLText = `ALTER TABLE imcallback_apps CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
ALTER TABLE imcallback_app_commands CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
ALTER TABLE imcallback_app_commands MODIFY command VARBINARY(764) NOT NULL`

// ShadowRules is schema version 3: a command's rule may be a shadow rule
// (callback.Rule.Shadow), false for the rows made before it.
const ShadowRules = `ALTER TABLE imcallback_app_commands ADD COLUMN shadow BOOLEAN NOT NULL DEFAULT FALSE`

// AppDisabled is schema version 4, on every database: an app's disabled
// state (Store.SetDisabled), read into callback.Endpoint.Disabled so that
// every node and a restart see it. Existing apps are enabled.
const AppDisabled = `ALTER TABLE imcallback_apps ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE`

// upsertApp returns the statement that inserts an app's row or, if it
// exists, replaces its columns: ON CONFLICT on SQLite (3.24 and later) and
// PostgreSQL, ON DUPLICATE KEY UPDATE on MySQL.
func upsertApp(d Dialect) string {
	const insert = `INSERT INTO imcallback_apps (app_id, url, protocol, secret, timeout_ms) VALUES (?, ?, ?, ?, ?) `
	if d == MySQL {
		return insert + `ON DUPLICATE KEY UPDATE url = VALUES(url), protocol = VALUES(protocol), secret = VALUES(secret), timeout_ms = VALUES(timeout_ms)`
	}
	return insert + `ON CONFLICT (app_id) DO UPDATE SET url = excluded.url, protocol = excluded.protocol, secret = excluded.secret, timeout_ms = excluded.timeout_ms`
}

// maxCommand is the longest command name the schema holds, in characters.
const maxCommand = 191

// checkText rejects what one of the supported databases cannot store as
// given, so that Set fails alike on all of them, with an error that does
// not quote the value: text that is not UTF-8 or holds a NUL (PostgreSQL's
// text and MySQL's utf8mb4 refuse it), and a command name longer than the
// schema's VARCHAR(191) (refused by PostgreSQL, cut short by a MySQL
// without strict mode). storedSecret is the secret as Set stores it.
func checkText(ep callback.Endpoint, storedSecret string) error {
	text := func(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
	if !text(ep.URL) {
		return fmt.Errorf("URL is not UTF-8 text without NUL: %w", callback.ErrInvalidConfig)
	}
	if !text(storedSecret) {
		return fmt.Errorf("the secret to store is not UTF-8 text without NUL (an Encrypt must encode its output, e.g. in base64): %w", callback.ErrInvalidConfig)
	}
	for cmd := range ep.Commands {
		if !text(cmd) {
			return fmt.Errorf("a command name is not UTF-8 text without NUL: %w", callback.ErrInvalidConfig)
		}
		if n := utf8.RuneCountInString(cmd); n > maxCommand {
			return fmt.Errorf("a command name has %d characters, more than %d: %w", n, maxCommand, callback.ErrInvalidConfig)
		}
	}
	return nil
}

// migrations returns the statements of each schema version on dialect d,
// in order: element 0 makes version 1. A new version appends a step; a
// step never changes once released. Every dialect has every version, some
// of them without statements.
func migrations(d Dialect) [][]string {
	v2 := []string(nil)
	if d == MySQL {
		v2 = statements(MySQLText)
	}
	return [][]string{
		statements(Schema),
		v2,
		statements(ShadowRules),
		statements(AppDisabled),
	}
}

// statements splits a script into its statements, without their semicolons.
func statements(script string) []string {
	var out []string
	for _, s := range strings.Split(script, ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Migrate creates the schema, or brings an older one up to date, and
// records its version in imcallback_schema. It is safe to run at every
// start, and from several processes at once: they take turns, under
// SQLite's write lock, a PostgreSQL advisory lock or a MySQL named lock
// (GET_LOCK), so each version is applied once; ctx bounds the wait for
// the lock as well as the work. It returns an error for a database whose
// schema is newer than this package knows.
//
// A migration the database ended to break a deadlock (see conflict: on
// SQLite, a write lock refused at once while another process switches the
// file to WAL) is run again from the start on a new connection.
func (s *Store) Migrate(ctx context.Context) error {
	err := retryConflicts(ctx, func() (err error) {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
		defer func() {
			// database/sql reports only a second Close today; any error
			// it may report is returned, not dropped.
			if cerr := conn.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("migrating: closing the connection: %w", cerr)
			}
		}()
		switch s.dialect {
		case Postgres:
			return s.migratePostgres(ctx, conn)
		case MySQL:
			return s.migrateMySQL(ctx, conn)
		default:
			return s.migrateSQLite(ctx, conn)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlapps: %w", err)
	}
	return nil
}

// migratePostgres migrates in one transaction (PostgreSQL's DDL is
// transactional) that first takes an advisory lock, released with it, on
// the schema's name.
func (s *Store) migratePostgres(ctx context.Context, conn *sql.Conn) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext(COALESCE(current_schema(), '') || '.imcallback_schema'))`); err != nil {
		return fmt.Errorf("locking the schema for migration: %w", err)
	}
	if err := s.migrateSteps(ctx, tx, func(step func(execer) error) error { return step(tx) }); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return nil
}

// migrateSQLite migrates in one transaction that holds SQLite's write lock
// from its start (BEGIN IMMEDIATE), so a concurrent Migrate waits for it
// (up to the connection's busy_timeout) and then finds the schema made.
func (s *Store) migrateSQLite(ctx context.Context, conn *sql.Conn) (err error) {
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("locking the schema for migration: %w", err)
	}
	defer func() {
		end := `COMMIT`
		if err != nil {
			end = `ROLLBACK`
		}
		if _, endErr := conn.ExecContext(context.WithoutCancel(ctx), end); endErr != nil {
			discard(conn) // it must not return to the pool inside a transaction
			if err == nil {
				err = fmt.Errorf("migrating: %w", endErr)
			}
		}
	}()
	return s.migrateSteps(ctx, conn, func(step func(execer) error) error { return step(conn) })
}

// migrateMySQL migrates under a named lock of the session (MySQL commits
// each DDL statement by itself, so there a step that fails halfway is
// finished by running Migrate again, as every statement is idempotent).
func (s *Store) migrateMySQL(ctx context.Context, conn *sql.Conn) (err error) {
	const name = `SHA1(CONCAT(COALESCE(DATABASE(), ''), '.imcallback_schema'))`
	var got sql.NullInt64
	// GET_LOCK waits up to a day; ctx ends the wait sooner (the driver
	// then closes the connection, which frees the lock).
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(`+name+`, 86400)`).Scan(&got); err != nil || got.Int64 != 1 {
		discard(conn)
		if err == nil {
			err = errors.New("GET_LOCK did not return 1")
		}
		return fmt.Errorf("locking the schema for migration: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, relErr := conn.ExecContext(rctx, `DO RELEASE_LOCK(`+name+`)`); relErr != nil {
			discard(conn) // closing the session frees the lock
		}
	}()
	return s.migrateSteps(ctx, conn, func(step func(execer) error) error {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if err := step(tx); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// execer is what migration statements run on: a *sql.Conn or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// migrateSteps, under the migration lock, creates imcallback_schema, reads
// the version and applies each missing step on what inStep gives it.
func (s *Store) migrateSteps(ctx context.Context, e execer, inStep func(step func(execer) error) error) error {
	if _, err := e.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS imcallback_schema (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("creating imcallback_schema: %w", err)
	}
	var version int
	if err := e.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM imcallback_schema`).Scan(&version); err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	steps := migrations(s.dialect)
	if version > len(steps) {
		return fmt.Errorf("the database's schema version %d is newer than this package's %d", version, len(steps))
	}
	for v := version + 1; v <= len(steps); v++ {
		err := inStep(func(e execer) error {
			for _, stmt := range steps[v-1] {
				if _, err := e.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
			_, err := e.ExecContext(ctx, s.q(`INSERT INTO imcallback_schema (version) VALUES (?)`), v)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrating to schema version %d: %w", v, err)
		}
	}
	return nil
}

// discard makes database/sql close conn instead of returning it to the
// pool.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// q rewrites a query written with ? placeholders for the dialect. The
// queries of this package have no ? inside a literal.
func (s *Store) q(query string) string {
	return rebind(s.dialect, query)
}

func rebind(d Dialect, query string) string {
	if d != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// queryer is what reads apps: a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

package sqlapps

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// Dialect is the SQL dialect of the database: it decides the query
// placeholders. The schema and the queries are otherwise the same on every
// supported database.
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

// Schema is the schema that Migrate creates, the latest version, as SQL that
// runs unchanged on SQLite, PostgreSQL and MySQL. One row of
// imcallback_apps per app; one row of imcallback_app_commands per command
// whose rule an app overrides (callback.Config.Commands' rule applies to the
// others). Timeouts are in milliseconds, 0 meaning the default; protocol is
// "seed" or "tencent"; secret is stored as Store.Set is given it (see
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

// migrations holds the statements of each schema version, in order:
// migrations[0] makes version 1. A new version appends a step; a step never
// changes once released.
var migrations = [][]string{
	statements(Schema),
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
// start, and from several processes at once. It returns an error for a
// database whose schema is newer than this package knows.
func (s *Store) Migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS imcallback_schema (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlapps: creating imcallback_schema: %w", err)
	}
	var version int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM imcallback_schema`).Scan(&version); err != nil {
		return fmt.Errorf("sqlapps: reading the schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("sqlapps: the database's schema version %d is newer than this package's %d", version, len(migrations))
	}
	for v := version + 1; v <= len(migrations); v++ {
		if err := s.migrate(ctx, v); err != nil {
			return fmt.Errorf("sqlapps: migrating to schema version %d: %w", v, err)
		}
	}
	return nil
}

// migrate runs the step to version v in one transaction (MySQL commits each
// DDL statement by itself: there, a step that fails halfway is finished by
// running Migrate again, as every statement is idempotent).
func (s *Store) migrate(ctx context.Context, v int) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, stmt := range migrations[v-1] {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO imcallback_schema (version) VALUES (?)`), v); err != nil {
		return err
	}
	return tx.Commit()
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

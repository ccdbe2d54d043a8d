// Package sqlite opens the SQLite database of the sqlapps package through
// modernc.org/sqlite, a pure-Go driver (no cgo), so that an IM server can
// keep its apps' endpoints in a local file without a database server.
package sqlite

import (
	"database/sql"
	"errors"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Pragmas are set on every connection Open makes: wait up to 5 s for a
// lock rather than fail at once, write-ahead logging so readers (Resolve)
// do not wait for a writer (Set), and foreign keys enforced.
const Pragmas = "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"

// Open opens (creating it if missing) the SQLite database file at path,
// with Pragmas. Use it with sqlapps.Options{Dialect: sqlapps.SQLite}. The
// caller closes the *sql.DB.
func Open(path string) (*sql.DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, errors.New("sqlite: the database path must be non-empty, without ? or #")
	}
	return sql.Open("sqlite", DSN(path))
}

// DSN returns the modernc.org/sqlite data source name Open uses for path.
func DSN(path string) string {
	return path + "?" + Pragmas
}

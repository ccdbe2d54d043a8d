// Package dbtest gives tests a fresh, empty database on each database that
// sqlapps is tested on: a SQLite file always, and a MariaDB database and a
// PostgreSQL schema on the servers named by SQLAPPS_MYSQL_DSN and
// SQLAPPS_POSTGRES_DSN (scripts/databases.sh starts both). Without a DSN
// the backend's tests are skipped with a message saying so, or fail when
// CI=true: CI must test every database.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	modernc "modernc.org/sqlite"     // registers the "sqlite" driver

	"github.com/imcallback/callback/sqlapps"
	"github.com/imcallback/callback/sqlapps/sqlite"
)

// Backend is one database the tests run on.
type Backend struct {
	// Name names the subtests: "sqlite", "mariadb" or "postgres".
	Name string
	// Driver is the database/sql driver's name (sql.Open's first argument)
	// and the CLI's --driver: "sqlite", "mysql" or "postgres".
	Driver string
	// Dialect is what sqlapps.Options.Dialect must be.
	Dialect sqlapps.Dialect
	// Env is the environment variable with the server's DSN, "" for SQLite.
	Env string
}

// SQLite, MariaDB and Postgres are the tested databases.
var (
	SQLite   = Backend{Name: "sqlite", Driver: "sqlite", Dialect: sqlapps.SQLite}
	MariaDB  = Backend{Name: "mariadb", Driver: "mysql", Dialect: sqlapps.MySQL, Env: "SQLAPPS_MYSQL_DSN"}
	Postgres = Backend{Name: "postgres", Driver: "postgres", Dialect: sqlapps.Postgres, Env: "SQLAPPS_POSTGRES_DSN"}
)

// All lists every tested database; a test runs its body once per entry,
// as a subtest named after it.
var All = []Backend{SQLite, MariaDB, Postgres}

// Servers lists the databases that run as servers.
var Servers = []Backend{MariaDB, Postgres}

// Missing returns a line for each server whose DSN is not set, for a
// TestMain to print: skipped subtests are easy to miss.
func Missing() []string {
	var out []string
	for _, b := range Servers {
		if os.Getenv(b.Env) == "" {
			out = append(out, fmt.Sprintf("WARNING: %s is not set: the %s tests are SKIPPED (fail under CI=true). Start the servers with: eval \"$(scripts/databases.sh start)\"", b.Env, b.Name))
		}
	}
	return out
}

// ServerDSN returns the DSN of b's server from its environment variable.
// When it is not set, it skips t, or fails it when CI=true.
func (b Backend) ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(b.Env)
	if dsn != "" {
		return dsn
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not set: CI must test sqlapps on %s (.ci/run starts it with scripts/databases.sh)", b.Env, b.Name)
	}
	t.Skipf("SKIPPED: %s is not set, so nothing is tested on %s. Start MariaDB and PostgreSQL with: eval \"$(scripts/databases.sh start)\", or run .ci/run", b.Env, b.Name)
	return ""
}

// DSN returns the DSN of a fresh, empty database for t, in the driver's
// syntax (for SQLite, a file's path without pragmas): a new SQLite file in
// t.TempDir, a new MariaDB database, or a new PostgreSQL schema (the DSN
// sets search_path). The MariaDB database and the PostgreSQL schema are
// dropped when t ends, after the cleanups registered after DSN (so close
// the *sql.DB in a later t.Cleanup).
func (b Backend) DSN(t testing.TB) string {
	t.Helper()
	if b.Env == "" {
		return filepath.Join(t.TempDir(), "apps.db")
	}
	server := b.ServerDSN(t)
	name := "imcallback_test_" + randomHex()
	admin, err := sql.Open(b.sqlDriver(), server)
	if err != nil {
		t.Fatalf("%s: %v", b.Env, err)
	}
	defer admin.Close()
	create, drop, dsn := "CREATE DATABASE "+name, "DROP DATABASE IF EXISTS "+name, ""
	switch b.Dialect {
	case sqlapps.MySQL:
		cfg, err := mysql.ParseDSN(server)
		if err != nil {
			t.Fatalf("%s: %v", b.Env, err)
		}
		cfg.DBName = name
		dsn = cfg.FormatDSN()
	case sqlapps.Postgres:
		create, drop = "CREATE SCHEMA "+name, "DROP SCHEMA IF EXISTS "+name+" CASCADE"
		u, err := url.Parse(server)
		if err != nil {
			t.Fatalf("%s must be a postgres:// URL", b.Env)
		}
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		dsn = u.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, create); err != nil {
		t.Fatalf("%s: %v", b.Name, err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open(b.sqlDriver(), server)
		if err != nil {
			t.Errorf("%s: %v", b.Env, err)
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, drop); err != nil {
			t.Errorf("%s: dropping the test's database: %v", b.Name, err)
		}
	})
	return dsn
}

// Connector returns a connector to dsn, one of DSN's.
func (b Backend) Connector(t testing.TB, dsn string) driver.Connector {
	t.Helper()
	var (
		c   driver.Connector
		err error
	)
	switch b.Dialect {
	case sqlapps.SQLite:
		c, err = modernc.NewConnector(sqlite.DSN(dsn))
	case sqlapps.MySQL:
		var cfg *mysql.Config
		if cfg, err = mysql.ParseDSN(dsn); err == nil {
			c, err = mysql.NewConnector(cfg)
		}
	case sqlapps.Postgres:
		var cfg *pgx.ConnConfig
		if cfg, err = pgx.ParseConfig(dsn); err == nil {
			c = stdlib.GetConnector(*cfg)
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", b.Name, err)
	}
	return c
}

// Open returns a *sql.DB on a fresh, empty database (see DSN), closed when
// t ends.
func (b Backend) Open(t testing.TB) *sql.DB {
	t.Helper()
	db := sql.OpenDB(b.Connector(t, b.DSN(t)))
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// sqlDriver is the name of b's database/sql driver.
func (b Backend) sqlDriver() string {
	if b.Dialect == sqlapps.Postgres {
		return "pgx"
	}
	return b.Driver
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

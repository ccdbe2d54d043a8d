package sqlapps_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback/sqlapps"
)

// SQLite ends one of two writers at once, without waiting out
// busy_timeout, when each holds a lock the other needs: a reader that
// wants to write while another connection waits to commit. Conflict must
// take that error for a conflict, so the transaction is run again.
func TestConflictOnSQLiteDeadlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	// The rollback journal (not WAL), as a file has before any connection
	// switched it: there a writer's commit waits for readers.
	open := func() *sql.DB {
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
		require.NoError(t, err)
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	a, b := open(), open()
	ctx := context.Background()
	_, err := a.Exec(`CREATE TABLE t (n INTEGER)`)
	require.NoError(t, err)

	ta, err := a.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = ta.Rollback() }()
	tb, err := b.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tb.Rollback() }()
	var n int
	require.NoError(t, ta.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n)) // a: shared lock
	require.NoError(t, tb.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n)) // b: shared lock
	_, err = ta.Exec(`INSERT INTO t VALUES (1)`)                       // a: reserved lock
	require.NoError(t, err)
	_, err = tb.Exec(`INSERT INTO t VALUES (2)`) // b wants reserved: a waits for b's shared one to commit
	require.Error(t, err, "the second writer must be refused")
	require.True(t, sqlapps.Conflict(err), "got %v, want an error Conflict recognises", err)
	t.Logf("refused with: %v", err)
}

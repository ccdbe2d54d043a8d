package sqlapps_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback/internal/dbtest"
	"github.com/imcallback/callback/sqlapps"
)

// A real deadlock on each server: two transactions lock two rows in
// opposite orders. The database ends one of them with an error that
// Conflict must recognise; other errors are not conflicts.
func TestConflictOnRealDeadlock(t *testing.T) {
	for _, b := range dbtest.Servers {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, stmt := range []string{
				`CREATE TABLE rows_ (id BIGINT NOT NULL PRIMARY KEY, n BIGINT NOT NULL)`,
				`INSERT INTO rows_ (id, n) VALUES (1, 0), (2, 0)`,
			} {
				_, err := db.ExecContext(ctx, stmt)
				require.NoError(t, err)
			}
			update := sqlapps.Rebind(b.Dialect, `UPDATE rows_ SET n = n + 1 WHERE id = ?`)
			tx1, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			tx2, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx1.ExecContext(ctx, update, 1)
			require.NoError(t, err)
			_, err = tx2.ExecContext(ctx, update, 2)
			require.NoError(t, err)
			errs := make([]error, 2)
			var wg sync.WaitGroup
			wg.Go(func() { _, errs[0] = tx1.ExecContext(ctx, update, 2) })
			wg.Go(func() { _, errs[1] = tx2.ExecContext(ctx, update, 1) })
			wg.Wait()
			_ = tx1.Rollback()
			_ = tx2.Rollback()
			victim := errors.Join(errs...)
			require.Error(t, victim, "one of the two must be the deadlock's victim")
			assert.True(t, sqlapps.Conflict(victim), "a deadlock: %v", victim)

			_, err = db.ExecContext(ctx, `INSERT INTO rows_ (id, n) VALUES (1, 0)`)
			require.Error(t, err)
			assert.False(t, sqlapps.Conflict(err), "a duplicate key: %v", err)
			_, err = db.ExecContext(ctx, `SELECT nothing FROM nowhere`)
			require.Error(t, err)
			assert.False(t, sqlapps.Conflict(err), "a bad query: %v", err)
		})
	}
}

// sqlState is an error of a driver that reports its SQLSTATE by method.
type sqlState string

func (s sqlState) Error() string    { return "a driver error" }
func (s sqlState) SQLState() string { return string(s) }

func TestRetryConflicts(t *testing.T) {
	ctx := context.Background()
	errDeadlock := sqlState("40P01")
	t.Run("until it succeeds", func(t *testing.T) {
		calls := 0
		err := sqlapps.RetryConflicts(ctx, func() error {
			if calls++; calls < 3 {
				return errDeadlock
			}
			return nil
		})
		assert.NoError(t, err)
		assert.Equal(t, 3, calls)
	})
	t.Run("a few times", func(t *testing.T) {
		calls := 0
		err := sqlapps.RetryConflicts(ctx, func() error { calls++; return errDeadlock })
		assert.ErrorIs(t, err, errDeadlock)
		assert.Equal(t, 5, calls, "the first attempt and 4 retries")
	})
	t.Run("not other errors", func(t *testing.T) {
		calls := 0
		err := sqlapps.RetryConflicts(ctx, func() error { calls++; return sqlState("23505") })
		assert.Error(t, err)
		assert.Equal(t, 1, calls)
	})
	t.Run("until ctx ends", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		calls := 0
		err := sqlapps.RetryConflicts(cctx, func() error { calls++; cancel(); return errDeadlock })
		assert.ErrorIs(t, err, errDeadlock)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, calls)
	})
	t.Run("by the text of MySQL's errors", func(t *testing.T) {
		assert.True(t, sqlapps.Conflict(errors.New("Error 1213 (40001): Deadlock found when trying to get lock; try restarting transaction")))
		assert.False(t, sqlapps.Conflict(errors.New("Error 1062 (23000): Duplicate entry '7' for key 'PRIMARY'")))
	})
}

package sqlapps

import (
	"context"
	"errors"
	"math/rand/v2"
	"regexp"
	"time"
)

// Retries of a transaction that lost a conflict: the attempts after the
// first, and the pause before the first retry, doubled for each next one
// (with jitter), so 4 retries wait about 10+20+40+80 ms at most.
const (
	conflictRetries = 4
	conflictPause   = 10 * time.Millisecond
)

// retryConflicts runs attempt, a whole transaction, and runs it again
// while it fails with a conflict (see conflict), up to conflictRetries
// times or until ctx ends. Databases may end any of concurrent writers'
// transactions to break a deadlock, expecting it to be run again: InnoDB
// does so even when every writer takes its locks in the same order (two
// upserts waiting for a third's new row).
func retryConflicts(ctx context.Context, attempt func() error) error {
	pause := conflictPause
	for retry := 0; ; retry++ {
		err := attempt()
		if err == nil || retry == conflictRetries || !conflict(err) {
			return err
		}
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		pause *= 2
	}
}

// conflictState matches the SQLSTATEs of a transaction the database
// rolled back for a conflict, as drivers print them: 40001 (serialization
// failure: MySQL's deadlock 1213, PostgreSQL's serializable conflicts) and
// 40P01 (PostgreSQL's deadlock); and SQLite's SQLITE_BUSY as
// modernc.org/sqlite prints it, which a connection gets at once, without
// waiting out busy_timeout, when SQLite sees two writers that would
// otherwise wait for each other.
var conflictState = regexp.MustCompile(`\b(40001|40P01)\b|\(SQLITE_BUSY\)`)

// conflict reports whether err is a transaction rolled back for a
// conflict. It uses the SQLSTATE of a driver error that gives one
// (github.com/jackc/pgx, github.com/lib/pq), else the error's text: that
// of github.com/go-sql-driver/mysql reads "Error 1213 (40001): ...".
func conflict(err error) bool {
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		state := coded.SQLState()
		return state == "40001" || state == "40P01"
	}
	return conflictState.MatchString(err.Error())
}

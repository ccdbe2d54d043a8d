package sqlapps

import "time"

// SetClock replaces the clock of s's cache. Call it before the first
// Resolve.
func SetClock(s *Store, now func() time.Time) { s.now = now }

// Rebind exposes the placeholder rewriting.
var Rebind = rebind

// Conflict and RetryConflicts expose the retry of transactions that lost
// a conflict.
var (
	Conflict       = conflict
	RetryConflicts = retryConflicts
)

package callback

import "time"

// SetClock replaces the clock that stamps d's signatures. Call it before
// the first Before or After.
func SetClock(d *Dispatcher, now func() time.Time) { d.now = now }

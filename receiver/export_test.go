package receiver

import "time"

// SetClock replaces the clock h checks timestamps against. Call it before
// h serves.
func SetClock(h *Handler, now func() time.Time) { h.now = now }

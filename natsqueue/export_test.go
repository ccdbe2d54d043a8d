package natsqueue

// Woken hands q a wake as if it came on the wake subject, for tests that
// need to know it was taken before they go on.
func (q *Queue) Woken(data []byte) { q.woken(data) }

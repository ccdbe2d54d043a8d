package callback

import (
	"log/slog"
	"sync"
	"testing"
	"time"
)

// BenchmarkBreakerClosed measures what a call costs its endpoint's closed
// breaker: gobreaker's Allow and done, each under the breaker's mutex,
// next to a bare mutex taken twice (the floor of any locked breaker), one
// goroutine and many at once. gobreaker has no path without its lock: it
// counts every request and outcome (consecutive failures, the rolling
// window's buckets) under it.
func BenchmarkBreakerClosed(b *testing.B) {
	newE := func(b *testing.B) *urlState {
		s := settings{Config: Config{Breaker: Breaker{Window: 10 * time.Second, Cooldown: 5 * time.Second, ConsecutiveFailures: 5, FailureRatio: 0.5, MinCalls: 20}}}
		us := &urlStates{s: &s, log: slog.New(slog.DiscardHandler)}
		return newURLState(us, "http://bench")
	}
	b.Run("gobreaker/serial", func(b *testing.B) {
		e := newE(b)
		b.ReportAllocs()
		for b.Loop() {
			done, err := e.allow(time.Now())
			if err != nil {
				b.Fatal(err)
			}
			done(nil)
		}
	})
	b.Run("gobreaker/parallel", func(b *testing.B) {
		e := newE(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				done, err := e.allow(time.Now())
				if err != nil {
					b.Error(err)
					return
				}
				done(nil)
			}
		})
	})
	var mu sync.Mutex
	n := 0
	b.Run("mutex/serial", func(b *testing.B) {
		for b.Loop() {
			mu.Lock()
			n++
			mu.Unlock()
			mu.Lock()
			n++
			mu.Unlock()
		}
	})
	b.Run("mutex/parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mu.Lock()
				n++
				mu.Unlock()
				mu.Lock()
				n++
				mu.Unlock()
			}
		})
	})
}

package natsqueue_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
	"github.com/stretchr/testify/require"
)

// BenchmarkAfter measures After with the memory queue and with the
// JetStream queue (embedded server, file store): ns/op is one After call,
// serial (its latency; p50 and p99 reported too) or from 64 goroutines
// (throughput). delivered/s is the rate from the first After until the App
// backend had every event.
//
//	go test -run '^$' -bench After -benchtime 20000x ./natsqueue/
func BenchmarkAfter(b *testing.B) {
	queues := []struct {
		name string
		make func(b *testing.B) callback.Queue
	}{
		{"memory", func(*testing.B) callback.Queue { return nil }},
		{"jetstream", func(b *testing.B) callback.Queue {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			q, err := natsqueue.Embedded(ctx, b.TempDir(), natsqueue.Options{})
			require.NoError(b, err)
			return q.ForDispatcher()
		}},
	}
	for _, qq := range queues {
		for _, parallel := range []bool{false, true} {
			name := qq.name + "/serial"
			if parallel {
				name = qq.name + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				var got atomic.Int64
				app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					got.Add(1)
					_, _ = w.Write([]byte(`{"code":200}`))
				}))
				defer app.Close()
				d, err := callback.New(callback.Config{
					URL: app.URL, Queue: qq.make(b), Logger: quiet,
					QueueSize: b.N + 1, // the memory queue must not refuse: After alone is measured
					// The endpoint's default limit (1,000/s) would be
					// the delivery rate measured.
					AfterLimit: callback.AfterLimit{Rate: 1e9},
				})
				require.NoError(b, err)
				defer func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					require.NoError(b, d.Close(ctx))
				}()
				ctx := context.Background()
				ev := []byte(`{"from":"alice","to":"bob","text":"hello, this is a message of about a hundred bytes"}`)

				start := time.Now()
				b.ResetTimer()
				if parallel {
					b.SetParallelism(32)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := d.After(ctx, 1, "message.send.after", ev); err != nil {
								b.Error(err)
								return
							}
						}
					})
				} else {
					lat := make([]time.Duration, 0, b.N)
					for range b.N {
						t0 := time.Now()
						if err := d.After(ctx, 1, "message.send.after", ev); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t0))
					}
					b.StopTimer()
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
					b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
				}
				b.StopTimer()
				for got.Load() < int64(b.N) {
					time.Sleep(time.Millisecond)
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "delivered/s")
			})
		}
	}
}

// BenchmarkListDeadLetters measures one page of 1,000 dead letters (the
// most a page holds), on the embedded server over loopback.
//
//	go test -run '^$' -bench ListDeadLetters ./natsqueue/
func BenchmarkListDeadLetters(b *testing.B) {
	srv := startServer(b, b.TempDir())
	a := newApp(b, func(hit, int) int { return http.StatusBadRequest }) // not retried: dead at once
	n := newNode(b, connect(b, srv.ClientURL()), natsqueue.Options{}, callback.Config{URL: a.URL, RetrySchedule: short,
		AfterLimit: callback.AfterLimit{Rate: 1e9}})
	ctx := context.Background()
	const letters = 1000
	for range letters {
		require.NoError(b, n.d.After(ctx, 7, "message.send.after", []byte(`{"text":"hi"}`)))
	}
	waitFor(b, "the dead letters", func() bool {
		c, err := n.q.DeadLetters(ctx)
		return err == nil && c == letters
	})
	for b.Loop() {
		page, err := n.q.ListDeadLetters(ctx, callback.DeadLetterQuery{Limit: letters})
		if err != nil || len(page) != letters {
			b.Fatalf("%d dead letters, err %v", len(page), err)
		}
	}
}

// BenchmarkOrdered measures the delivery rate of natsqueue.Embedded with
// one app's events unkeyed and under 64 and 10,000 order keys (event i
// under key i mod keys), from 64 senders to 16 workers: the natsqueue
// half of bench's ordered case, in one process, for profiles
// (-cpuprofile) of the keyed path against the unkeyed one.
//
//	go test -run '^$' -bench Ordered -benchtime 5000x -count 5 ./natsqueue/
func BenchmarkOrdered(b *testing.B) {
	for _, keys := range []int{0, 64, 10000} {
		b.Run("keys="+strconv.Itoa(keys), func(b *testing.B) {
			var got atomic.Int64
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got.Add(1)
				_, _ = w.Write([]byte(`{"code":200}`))
			}))
			defer app.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			q, err := natsqueue.Embedded(ctx, b.TempDir(), natsqueue.Options{Logger: quiet})
			cancel()
			require.NoError(b, err)
			d, err := callback.New(callback.Config{URL: app.URL, Queue: q.ForDispatcher(), Logger: quiet, Workers: 16,
				AfterLimit: callback.AfterLimit{Rate: -1}})
			require.NoError(b, err)
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				require.NoError(b, d.Close(ctx))
			}()
			ctxs := []context.Context{context.Background()}
			if keys > 0 {
				ctxs = make([]context.Context, keys)
				for i := range ctxs {
					ctxs[i] = callback.WithOrderKey(context.Background(), "conversation-"+strconv.Itoa(i))
				}
			}
			ev := []byte(`{"from":"alice","to":"bob","text":"hello, this is a message of about a hundred bytes"}`)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range 64 {
				wg.Go(func() {
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						if err := d.After(ctxs[int(i)%len(ctxs)], 1, "message.send.after", ev); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			for got.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "delivered/s")
		})
	}
}

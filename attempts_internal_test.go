package callback

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// BenchmarkAttemptRecord measures what the attempt log adds to one Before
// call and one After attempt, alone: the recording calls with the log off
// (nil: the baseline) and on. Both take their timing from the metrics'
// and the transport's clock readings, so the log reads no clock. The parallel cases show what writers
// contending for the ring's index cost.
func BenchmarkAttemptRecord(b *testing.B) {
	r, err := newRoute(&settings{Config: Config{Timeout: time.Second}}, &Endpoint{URL: "http://app.example/cb?token=x"})
	if err != nil {
		b.Fatal(err)
	}
	ev := Event{ID: "msg_x_1", AppID: 7, Command: "message.send.after", Body: []byte(`{}`), Attempts: 1}
	res := &http.Response{StatusCode: 200}
	fail := &statusError{ErrStatus, 503}
	start, took := time.Now(), time.Millisecond // as the metrics time a Before call and an attempt
	for _, on := range []bool{false, true} {
		name := "log=off"
		var l *attemptLog
		if on {
			name = "log=on"
			l = newAttemptLog(&settings{Config: Config{AttemptLog: defaultAttemptLog}})
		}
		d := &Dispatcher{attempts: l, s: settings{Config: Config{Retries: 4}}, mem: &memQueue{}}
		d.life, d.abort = contextPair()
		b.Run("before/"+name, func(b *testing.B) {
			b.ReportAllocs()
			resp := Response{Code: 200, Msg: "success"}
			for b.Loop() {
				d.attempts.before(context.Background(), r, 7, "message.send.before", "msg_x_1", start, took, resp, nil)
			}
		})
		b.Run("before-failed/"+name, func(b *testing.B) {
			b.ReportAllocs()
			resp := Response{Code: 200, Msg: "success", Err: fail}
			for b.Loop() {
				d.attempts.before(context.Background(), r, 7, "message.send.before", "msg_x_1", start, took, resp, nil)
			}
		})
		b.Run("after/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d.afterAttempt(&ev, r, start, took, res, false, nil)
			}
		})
		b.Run("after-failed/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d.afterAttempt(&ev, r, start, took, nil, true, fail)
			}
		})
		b.Run("before-parallel/"+name, func(b *testing.B) {
			b.ReportAllocs()
			resp := Response{Code: 200, Msg: "success"}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d.attempts.before(context.Background(), r, 7, "message.send.before", "msg_x_1", start, took, resp, nil)
				}
			})
		})
		d.abort()
	}
}

func contextPair() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

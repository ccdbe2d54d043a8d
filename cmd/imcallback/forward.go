package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/answer"
	"github.com/imcallback/callback/internal/wire"
	"github.com/imcallback/callback/openim"
	"github.com/imcallback/callback/receiver"
)

// callbackJSON is one callback as listen --json prints it and --record
// saves it, one JSON object a line; replay reads the same lines.
type callbackJSON struct {
	Time      time.Time       `json:"time"`
	Protocol  string          `json:"protocol"`
	App       int             `json:"app"`
	Command   string          `json:"command"`
	ID        string          `json:"id,omitempty"`
	ClientIP  string          `json:"client_ip,omitempty"`
	Platform  string          `json:"platform,omitempty"`
	Signature string          `json:"signature,omitempty"` // valid, not checked or invalid
	Answer    *answerJSON     `json:"answer,omitempty"`
	Forward   *forwardJSON    `json:"forward,omitempty"`
	Rejected  string          `json:"rejected,omitempty"` // why it was refused, before any answer
	Status    int             `json:"status,omitempty"`   // of a refused callback
	Body      json.RawMessage `json:"body,omitempty"`
}

// answerJSON is the decision a callback was answered with.
type answerJSON struct {
	Action string          `json:"action"`
	Code   int             `json:"code,omitempty"`
	Msg    string          `json:"msg,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	Rule   string          `json:"rule,omitempty"` // the rule that chose it
}

// forwardJSON is how forwarding a callback went.
type forwardJSON struct {
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

func toAnswerJSON(dec receiver.Decision, why string) *answerJSON {
	return &answerJSON{Action: dec.Action.String(), Code: dec.Code, Msg: dec.Msg, Data: dec.Data, Rule: why}
}

// forwarder relays verified callbacks to a local App backend through the
// library, re-signed, and turns its answer back into a decision.
type forwarder struct {
	proto callback.Protocol
	d     *callback.Dispatcher
}

func newForwarder(url string, p callback.Protocol, secret string, timeout time.Duration) (*forwarder, error) {
	d, err := callback.New(callback.Config{
		Health:   noDisable, // a tool reports every answer
		URL:      url,
		Protocol: p,
		Secret:   secret,
		Timeout:  timeout,
		Breaker:  callback.Breaker{Disabled: true}, // a developer's backend: always try
		Workers:  1,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, fmt.Errorf("--forward-to: %w", err)
	}
	return &forwarder{proto: p, d: d}, nil
}

// forward sends req on, with its webhook-id, and returns the local App
// backend's decision; an error when it did not answer in the protocol.
func (f *forwarder) forward(ctx context.Context, req *receiver.Request) (receiver.Decision, time.Duration, error) {
	if req.ID != "" {
		ctx = answer.ExactID(callback.WithEventID(ctx, req.ID)) // relayed under its own ID
	}
	if req.ClientIP != "" || req.Platform != "" {
		ctx = callback.WithClient(ctx, req.ClientIP, req.Platform)
	}
	start := time.Now()
	r := f.d.Before(ctx, req.AppID, req.Command, req.Body)
	elapsed := time.Since(start)
	if r.Err != nil {
		return receiver.Decision{}, elapsed, r.Err
	}
	return decisionOf(f.proto, r), elapsed, nil
}

// decisionOf is the decision that answers as r was answered.
func decisionOf(p callback.Protocol, r callback.Response) receiver.Decision {
	switch r.Action {
	case callback.Deny:
		return receiver.Deny(r.Code, r.Msg)
	case callback.Drop:
		return receiver.Drop()
	}
	dec := receiver.Decision{Action: callback.Allow, Msg: r.Msg}
	if r.Data == nil {
		return dec
	}
	if p == callback.AppCommand {
		dec.Data = r.Data
		return dec
	}
	// Tencent's and OpenIM's Data is the whole answer: keep the fields
	// beside the envelope.
	envelope := wire.TencentEnvelope[:]
	if p == callback.OpenIM {
		envelope = []string{openim.FieldActionCode, openim.FieldErrCode, openim.FieldErrMsg, openim.FieldErrDlt, openim.FieldNextCode}
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(r.Data, &fields) == nil {
		for k := range fields {
			for _, e := range envelope {
				if strings.EqualFold(k, e) {
					delete(fields, k)
				}
			}
		}
		if len(fields) > 0 {
			dec.Data, _ = json.Marshal(fields)
		}
	}
	return dec
}

// close closes the forwarder's Dispatcher and reports a failure on stderr.
func (f *forwarder) close(stderr io.Writer) {
	closeDispatcher(stderr, "imcallback listen: --forward-to", f.d)
}

// recorder appends callbacks to a file, one JSON object a line.
type recorder struct {
	mu  sync.Mutex // serialises writes
	f   *os.File
	err error // the first write error
}

func newRecorder(path string) (*recorder, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--record: %w", err)
	}
	return &recorder{f: f}, nil
}

func (r *recorder) write(c *callbackJSON) {
	line, err := json.Marshal(c)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		_, err = r.f.Write(append(line, '\n'))
	}
	if err != nil && r.err == nil {
		r.err = err
	}
}

func (r *recorder) close() error {
	err := r.f.Close()
	if r.err != nil {
		return fmt.Errorf("--record: %w", r.err)
	}
	return err
}

// counters are listen's totals for --quiet's summary lines.
type counters struct {
	allow, deny, drop, rejected, failed atomic.Int64
}

func (c *counters) add(dec receiver.Decision, err error) {
	switch {
	case err != nil:
		c.failed.Add(1)
	case dec.Action == callback.Deny:
		c.deny.Add(1)
	case dec.Action == callback.Drop:
		c.drop.Add(1)
	default:
		c.allow.Add(1)
	}
}

// summarise prints, once a second until ctx ends, a line counting the
// callbacks of that second, if there were any; then a line of totals.
func (c *counters) summarise(ctx context.Context, w func(format string, args ...any)) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last [5]int64
	now := func() [5]int64 {
		return [5]int64{c.allow.Load(), c.deny.Load(), c.drop.Load(), c.rejected.Load(), c.failed.Load()}
	}
	line := func(prefix string, n [5]int64) {
		w("%s  %d callbacks  allow %d  deny %d  drop %d  rejected %d  failed %d\n",
			prefix, n[0]+n[1]+n[2]+n[3]+n[4], n[0], n[1], n[2], n[3], n[4])
	}
	for {
		select {
		case t := <-tick.C:
			cur := now()
			var d [5]int64
			for i := range d {
				d[i] = cur[i] - last[i]
			}
			last = cur
			if d != [5]int64{} {
				line(t.Format("15:04:05"), d)
			}
		case <-ctx.Done():
			line("total", now())
			return
		}
	}
}

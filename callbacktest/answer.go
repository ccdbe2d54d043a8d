package callbacktest

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/imcallback/callback/format"
	"github.com/imcallback/callback/receiver"
)

// fault is how an Answer misbehaves instead of answering.
type fault int

const (
	noFault fault = iota
	faultStatus
	faultHang
	faultReset
	faultGarbage
)

// An Answer is what the fake App backend replies to one callback: a
// decision, written in the protocol's answer format, or a fault. Build one
// with Allow, Deny, Drop, Rewrite, Status, Hang, Reset or Garbage, and add
// latency with Delayed or SlowBody. The zero Answer allows.
type Answer struct {
	// Decision is the App's decision, written as the protocol's answer
	// (see receiver.Decision for how each protocol writes it).
	Decision receiver.Decision

	delay  time.Duration // before anything is written
	slow   time.Duration // how long the body takes to write
	fault  fault
	status int // for faultStatus
}

// Allow answers that the event may proceed unchanged.
func Allow() Answer { return Answer{Decision: receiver.Allow()} }

// Deny answers that the event is refused with the App's code and msg.
// For AppCommand, code must not be 200; for Tencent, not 0 or 2; for
// OpenIM, not 0 (see receiver.Deny): such an answer is written as a 500.
func Deny(code int, msg string) Answer { return Answer{Decision: receiver.Deny(code, msg)} }

// Drop answers that the event is dropped silently. AppCommand and OpenIM
// cannot express a drop: it is written as a deny, code 403 and msg
// "dropped" (see receiver.Drop).
func Drop() Answer { return Answer{Decision: receiver.Drop()} }

// Rewrite answers that the event may proceed with data as the App's
// changes (see receiver.Rewrite). For AppCommand, data is the answer's
// "data"; for Tencent and OpenIM it must be a JSON object whose fields are
// added to the answer, such as {"MsgBody": [...]} or {"content": "..."}. data is not checked here: invalid JSON is answered 500.
func Rewrite(data string) Answer {
	return Answer{Decision: receiver.Rewrite(json.RawMessage(data))}
}

// Status answers the HTTP status code, with a short plain-text body and no
// decision: 503 for a failing App backend, 429 for a throttled one, 302
// for a redirect.
func Status(code int) Answer { return Answer{fault: faultStatus, status: code} }

// Hang never answers: the request is held open until the sender gives up
// (its timeout or context) or the Server closes.
func Hang() Answer { return Answer{fault: faultHang} }

// Reset closes the connection without answering, with a TCP reset where
// the platform allows it, as a crashing App backend does.
func Reset() Answer { return Answer{fault: faultReset} }

// Garbage answers 200 with a body that is not JSON, so the sender cannot
// read a decision from it.
func Garbage() Answer { return Answer{fault: faultGarbage} }

// Delayed returns a copy of a that waits d before writing anything. The
// wait ends early, with nothing written, if the sender gives up or the
// Server closes.
func (a Answer) Delayed(d time.Duration) Answer {
	a.delay = d
	return a
}

// SlowBody returns a copy of a that writes its status and headers at once
// and then trickles its body over d, in small flushed pieces: a sender
// that bounds the whole call (as Before does) times out reading it.
func (a Answer) SlowBody(d time.Duration) Answer {
	a.slow = d
	return a
}

// String describes a, for test failure messages.
func (a Answer) String() string {
	var s string
	switch a.fault {
	case faultStatus:
		s = fmt.Sprintf("status %d", a.status)
	case faultHang:
		s = "hang"
	case faultReset:
		s = "reset"
	case faultGarbage:
		s = "garbage"
	default:
		d := a.Decision
		switch {
		case d.Action == format.Allow && d.Data != nil:
			s = "rewrite " + string(d.Data)
		case d.Action == format.Deny:
			s = fmt.Sprintf("deny %d %q", d.Code, d.Msg)
		default:
			s = d.Action.String()
		}
	}
	if a.delay > 0 {
		s += fmt.Sprintf(" after %v", a.delay)
	}
	if a.slow > 0 {
		s += fmt.Sprintf(", body over %v", a.slow)
	}
	return s
}

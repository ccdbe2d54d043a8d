package callback

import (
	"bytes"
	"sync/atomic"

	"github.com/imcallback/callback/format"
)

// answerMemo remembers the last answer that allowed an event without data:
// the answer most App backends give to nearly every Before call, byte for
// byte. A call that gets it again skips decoding it (reflection and seven
// allocations), which is most of the library's own cost on the hot path.
// It relies on format.Sender.Decode being a function of the answer's bytes alone.
type answerMemo struct {
	last atomic.Pointer[memoEntry]
}

type memoEntry struct {
	answer []byte
	resp   Response
}

// maxMemoAnswer bounds the answer kept: a plain allow is a few dozen bytes.
const maxMemoAnswer = 256

// decode returns s's decoding of answer as a Response on protocol p, from
// the memo when answer is the remembered one.
func (m *answerMemo) decode(s format.Sender, p Protocol, answer []byte) (Response, error) {
	if e := m.last.Load(); e != nil && bytes.Equal(e.answer, answer) {
		return e.resp, nil
	}
	dec, err := s.Decode(answer)
	if err != nil {
		return Response{}, err
	}
	r := decisionResponse(p, dec)
	if r.Action == Allow && r.Data == nil && len(answer) <= maxMemoAnswer {
		m.last.Store(&memoEntry{answer: bytes.Clone(answer), resp: r})
	}
	return r, nil
}

package callback

import (
	"errors"
	"testing"
)

// checkCommand runs on every Before and After: a valid name costs no
// allocation, ASCII or not.
func TestCheckCommandAllocatesNothing(t *testing.T) {
	for _, name := range []string{"C2C.CallbackBeforeSendMsg", "消息.发送"} {
		if n := testing.AllocsPerRun(100, func() { _ = checkCommand(name) }); n != 0 {
			t.Errorf("checkCommand(%q) allocates %v times, want 0", name, n)
		}
	}
}

// checkCommand's word-at-a-time check refuses what its byte loop does:
// every byte value at every place of names of 1 to 24 bytes, the rest
// printable ASCII.
func TestCheckCommandWords(t *testing.T) {
	bad := func(s string) int { // the byte loop alone: where it stops, or -1
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c >= 0x7f {
				return i
			}
		}
		return -1
	}
	buf := make([]byte, 24)
	for n := 1; n <= len(buf); n++ {
		for at := range n {
			for c := range 256 {
				for i := range buf[:n] {
					buf[i] = byte('a' + i%26)
				}
				buf[at] = byte(c)
				name := string(buf[:n])
				err := checkCommand(name)
				want := bad(name)
				if want < 0 && err != nil || want >= 0 && c < 0x80 && err == nil {
					t.Fatalf("checkCommand(%q): %v, want the byte loop's verdict (bad at %d)", name, err, want)
				}
				var ce *commandError
				if want >= 0 && c < 0x80 && (!errors.As(err, &ce) || ce.pos != at) {
					t.Fatalf("checkCommand(%q): %v, want byte %d refused", name, err, at)
				}
				if c >= 0x80 && err == nil { // a lone byte above 0x7f is not UTF-8
					t.Fatalf("checkCommand(%q): nil, want a refusal", name)
				}
			}
		}
	}
}

func BenchmarkCheckCommand(b *testing.B) {
	for _, name := range []string{"C2C.CallbackBeforeSendMsg", "message.send.after", "消息.发送"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				_ = checkCommand(name)
			}
		})
	}
}

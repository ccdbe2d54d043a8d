package callback

import "testing"

// checkCommand runs on every Before and After: a valid name costs no
// allocation, ASCII or not.
func TestCheckCommandAllocatesNothing(t *testing.T) {
	for _, name := range []string{"C2C.CallbackBeforeSendMsg", "消息.发送"} {
		if n := testing.AllocsPerRun(100, func() { _ = checkCommand(name) }); n != 0 {
			t.Errorf("checkCommand(%q) allocates %v times, want 0", name, n)
		}
	}
}

func BenchmarkCheckCommand(b *testing.B) {
	for _, name := range []string{"C2C.CallbackBeforeSendMsg", "消息.发送"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				_ = checkCommand(name)
			}
		})
	}
}

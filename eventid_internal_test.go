package callback

import "testing"

// The webhook-id the Dispatcher makes costs one allocation, its string:
// the AES block is encrypted in the string's own memory (a buffer handed
// to cipher.Block.Encrypt escapes), and the ID keeps its shape.
func TestEventIDOneAllocation(t *testing.T) {
	d := &Dispatcher{ids: newIDCipher()}
	seen := map[string]bool{}
	for seq := range uint64(1000) {
		id := d.eventID(seq)
		if !isAutoID(id) {
			t.Fatalf("eventID(%d) = %q: not the shape of an ID it makes", seq, id)
		}
		if seen[id] {
			t.Fatalf("eventID(%d) = %q: made twice", seq, id)
		}
		seen[id] = true
	}
	if n := testing.AllocsPerRun(100, func() { _ = d.eventID(7) }); n != 1 {
		t.Errorf("eventID allocates %v times, want 1", n)
	}
}

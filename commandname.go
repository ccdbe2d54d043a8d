package callback

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// commandError is an invalid command name's error: where it goes wrong.
// It wraps ErrInvalidCommand and never holds the name itself, which may
// carry a terminal's escape sequences into a log.
type commandError struct {
	pos  int  // byte offset of the offending character
	r    rune // the character; utf8.RuneError for a byte that is not UTF-8
	utf8 bool // whether the byte at pos starts valid UTF-8
}

func (e *commandError) Error() string {
	switch {
	case !e.utf8:
		return fmt.Sprintf("%v: byte %d is not UTF-8", ErrInvalidCommand, e.pos)
	case e.r < 0x80:
		return fmt.Sprintf("%v: byte %d is a control character (%U)", ErrInvalidCommand, e.pos, e.r)
	}
	return fmt.Sprintf("%v: byte %d starts a control or bidi character (%U)", ErrInvalidCommand, e.pos, e.r)
}

func (e *commandError) Unwrap() error { return ErrInvalidCommand }

// errEmptyCommand is the error of an empty command name, made once.
var errEmptyCommand = fmt.Errorf("%w: empty", ErrInvalidCommand)

// checkCommand rejects a command name that is empty, not UTF-8, or holds a
// character that is not printed as itself: a C0 control or DEL, a C1
// control (U+0080 to U+009F), or a bidi control (U+061C, U+200E, U+200F,
// U+202A to U+202E, U+2066 to U+2069). Such a name would reach an
// operator's terminal and logs through every tool that prints it. It runs
// on every Before and After: ASCII is checked eight bytes at a time, and
// nothing is allocated unless the name is refused.
func checkCommand(command string) error {
	if command == "" {
		return errEmptyCommand
	}
	i := 0
	for ; i+8 <= len(command); i += 8 {
		// The 8 bytes from i, read as one word, are all printable ASCII
		// (0x20 to 0x7e): no byte has its top bit set, none is below
		// 0x20 (the byte minus 0x20 borrows), none is 0x7f (the byte xor
		// 0x7f is zero). A borrow may make a later byte look bad too:
		// that only sends the check to the byte loop below, which finds
		// whether any byte is.
		s := command[i : i+8]
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		const ones, tops = 0x0101010101010101, 0x8080808080808080
		del := w ^ 0x7f*ones
		if (w|(w-0x20*ones)&^w|(del-ones)&^del)&tops != 0 {
			break
		}
	}
	for ; i < len(command); i++ {
		c := command[i]
		if c >= utf8.RuneSelf {
			return checkCommandRunes(command, i)
		}
		if c < 0x20 || c == 0x7f {
			return &commandError{pos: i, r: rune(c), utf8: true}
		}
	}
	return nil
}

// checkCommandRunes is checkCommand's slow path, from byte i on: the first
// byte that is not ASCII.
func checkCommandRunes(command string, i int) error {
	for i < len(command) {
		c := command[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return &commandError{pos: i, r: rune(c), utf8: true}
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(command[i:])
		if r == utf8.RuneError && n == 1 {
			return &commandError{pos: i, r: r}
		}
		if unprintedRune(r) {
			return &commandError{pos: i, r: r, utf8: true}
		}
		i += n
	}
	return nil
}

// unprintedRune reports whether r, not ASCII, is a C1 control or a bidi
// control: a character a terminal acts on or that reorders what follows.
func unprintedRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f: // C1 controls, U+009B among them (CSI)
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // ALM, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	}
	return false
}

// loggedCommand is command as the failure log writes it: as is when it
// is valid, else quoted with strconv.QuoteToGraphic, so that a refused
// name's control characters reach a log only as escapes.
func loggedCommand(command string) string {
	if command == "" || checkCommand(command) == nil {
		return command
	}
	return strconv.QuoteToGraphic(command)
}

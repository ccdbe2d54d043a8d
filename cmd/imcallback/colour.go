package main

import (
	"fmt"
	"io"
	"os"

	"github.com/imcallback/callback"
)

// colourOn reports whether w is a terminal that may get colour: an
// *os.File on a character device, with $NO_COLOR unset or empty
// (https://no-color.org) and $TERM not "dumb".
func colourOn(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// ANSI colours.
const (
	green  = "32"
	red    = "31"
	yellow = "33"
)

// actionColour is the colour a decision of action a is printed in: an
// allow green, a deny red, a drop yellow.
func actionColour(a callback.Action) string {
	switch a {
	case callback.Deny:
		return red
	case callback.Drop:
		return yellow
	}
	return green
}

// painter writes to a terminal in colour, and to anything else plain.
type painter struct {
	w  io.Writer
	on bool
}

func newPainter(w io.Writer) painter { return painter{w: w, on: colourOn(w)} }

// paint returns s in colour c when p is on.
func (p painter) paint(c, s string) string {
	if !p.on {
		return s
	}
	return "\x1b[" + c + "m" + s + "\x1b[0m"
}

// finding prints one line of a report, marked ok or FAIL.
func (p painter) finding(ok bool, format string, args ...any) {
	mark := p.paint(green, "ok  ")
	if !ok {
		mark = p.paint(red, "FAIL")
	}
	fmt.Fprintf(p.w, "  %s  %s\n", mark, fmt.Sprintf(format, args...))
}

// note prints one line of a report that is neither a pass nor a failure.
func (p painter) note(format string, args ...any) {
	fmt.Fprintf(p.w, "  %s  %s\n", p.paint(yellow, "note"), fmt.Sprintf(format, args...))
}

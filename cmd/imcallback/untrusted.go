package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Text that came from outside (a database row, an App backend's answer, a
// request to listen) reaches the operator's terminal, and the programs
// that read the CLI's JSON, only through these: a control character (ESC,
// BEL, a carriage return), a C1 control (U+009B opens an escape sequence
// on many terminals) or an invisible one (a bidi override) is printed as
// an escape, never raw. encoding/json escapes the C0 controls but passes
// C1 and bidi characters, hence graphicJSON.

// safe returns untrusted text for the terminal: "-" for none, the text as
// is when it is printable and has no space or quote, and otherwise quoted
// with strconv.QuoteToGraphic, so that control characters (escape
// sequences, carriage returns, newlines that would forge a line) and
// invisible ones reach the operator's terminal only as escapes.
func safe(s string) string {
	if s == "" {
		return "-"
	}
	if !isGraphic(s) || strings.ContainsAny(s, ` "\\`) {
		return strconv.QuoteToGraphic(s)
	}
	return s
}

// printable returns untrusted text that may hold spaces (a header value, a
// rejection's reason) as is when every character is graphic, and otherwise
// quoted with strconv.QuoteToGraphic.
func printable(s string) string {
	if !isGraphic(s) {
		return strconv.QuoteToGraphic(s)
	}
	return s
}

// isGraphic reports whether s is UTF-8 whose every character is graphic
// (strconv.IsGraphic: letters, marks, numbers, punctuation, symbols and
// spaces, none of the C0 or C1 controls or the bidi and other format
// characters). A byte that is not UTF-8 is not: a lone 0x9b is CSI to a
// terminal that reads Latin-1.
func isGraphic(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !strconv.IsGraphic(r) {
			return false
		}
		i += n
	}
	return true
}

// graphicJSON escapes, as \uXXXX, every character of pretty-printed JSON
// that is not graphic, but the newlines and spaces the indentation put
// there. JSON has none outside its strings, and in a string the escape
// means the same character, so the text stays the same JSON while no
// control or invisible character (a C1 escape such as U+009B, a bidi
// override) reaches the terminal raw.
func graphicJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == ' ' || strconv.IsGraphic(r):
			b.WriteRune(r)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, "\\u%04x\\u%04x", r1, r2)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// jsonLine encodes v as one line whose every character is graphic: JSON's
// own escapes stand in for any other, so a terminal gets no control
// character from an untrusted body.
func jsonLine(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("{\"error\":%q}\n", err.Error())
	}
	return graphicJSON(b.String())
}

// graphic returns untrusted text inside a line of the CLI's own (an error
// message, a finding) as is when every character is graphic, and otherwise
// with each other character escaped as strconv.QuoteToGraphic escapes it,
// without quotes around the whole.
func graphic(s string) string {
	if isGraphic(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case strconv.IsGraphic(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRuneToGraphic(r) // '\x1b', with its quotes
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// writeJSON prints v as one line of JSON, every character graphic.
func writeJSON(w io.Writer, v any) {
	fmt.Fprint(w, jsonLine(v))
}

// writeIndentedJSON prints v as indented JSON, every character graphic
// but the indentation's.
func writeIndentedJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := io.WriteString(w, graphicJSON(b.String()))
	return err
}

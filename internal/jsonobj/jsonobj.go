// Package jsonobj reads the top level of a JSON object strictly, for both
// sides of the wire: the Dispatcher reading an App backend's answer and the
// receiver writing one. Go's encoding/json matches keys case-insensitively
// and lets the last of two equal keys win, so {"code":403,"Code":200} means
// whatever the reader's library decides; an answer like that is refused.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ErrAmbiguous is wrapped by Fields' error for an object with two keys that
// are equal or differ only in case.
var ErrAmbiguous = errors.New("duplicate or case-variant key")

// Fields returns the members of the JSON object data, keyed exactly as
// written. It returns an error for data that is not one JSON object, is not
// valid UTF-8, or has two keys that are equal or equal under Unicode case
// folding (wrapping ErrAmbiguous). The error names no key and no value.
func Fields(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil {
		return nil, syntaxError(err)
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	fields := map[string]json.RawMessage{}
	folded := map[string]struct{}{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		key := tok.(string) // the decoder only gives a string in key position
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, syntaxError(err)
		}
		f := fold(key)
		if _, dup := folded[f]; dup {
			return nil, ErrAmbiguous
		}
		folded[f] = struct{}{}
		fields[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return fields, nil
}

// fold returns the form of key under which keys that differ only in case
// (upper-cased, then lower-cased, so that K, k and the Kelvin sign agree)
// are equal.
func fold(key string) string { return strings.ToLower(strings.ToUpper(key)) }

// Collides reports whether key is one of names or differs from one only in
// case.
func Collides(key string, names ...string) bool {
	for _, n := range names {
		if strings.EqualFold(key, n) {
			return true
		}
	}
	return false
}

func syntaxError(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("not valid JSON: %w", err)
}

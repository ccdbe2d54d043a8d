// Package jsonobj checks the top level of a JSON object strictly, for both
// sides of the wire: the Dispatcher reading an App backend's answer and the
// receiver writing one. Go's encoding/json matches keys case-insensitively
// and lets the last of two equal keys win, so {"code":403,"Code":200} means
// whatever the reader's library decides; an answer like that is refused.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// Errors of Check. None names a key or a value.
var (
	// ErrAmbiguous is returned for an object with two top-level keys that
	// are equal or differ only in case, or a key that differs only in case
	// from one of the names given to Check.
	ErrAmbiguous = errors.New("duplicate or case-variant key")
	// ErrNotObject is returned for data that is not one JSON object in
	// UTF-8.
	ErrNotObject = errors.New("not one JSON object in UTF-8")
)

// smallObject is how many keys are compared pairwise before Check switches
// to a map of their folded forms.
const smallObject = 16

// Check returns nil if data is one JSON object, valid UTF-8, whose
// top-level keys are unique under Unicode case folding, and none of which
// differs only in case from one of names (each of names must be written
// exactly, if at all). It reads data in one pass after json.Valid and
// allocates only for keys written with escapes or objects of many keys.
func Check(data []byte, names ...string) error {
	if !utf8.Valid(data) || !json.Valid(data) {
		return ErrNotObject
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return ErrNotObject
	}
	var small [smallObject][]byte
	keys := small[:0]
	var folded map[string]struct{}
	// json.Valid has checked the syntax, so the scan below can trust it.
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return nil
	}
	for {
		end := skipString(data, i)
		key, err := unquote(data[i:end])
		if err != nil {
			return ErrNotObject
		}
		for _, n := range names {
			if string(key) != n && bytes.EqualFold(key, []byte(n)) {
				return ErrAmbiguous
			}
		}
		switch {
		case folded != nil:
			f := fold(key)
			if _, dup := folded[f]; dup {
				return ErrAmbiguous
			}
			folded[f] = struct{}{}
		case len(keys) < smallObject:
			for _, k := range keys {
				if bytes.EqualFold(k, key) {
					return ErrAmbiguous
				}
			}
			keys = append(keys, key)
		default:
			folded = make(map[string]struct{}, 2*smallObject)
			for _, k := range append(keys, key) {
				f := fold(k)
				if _, dup := folded[f]; dup {
					return ErrAmbiguous
				}
				folded[f] = struct{}{}
			}
		}
		i = skipSpace(data, end) + 1 // past the colon
		i = skipSpace(data, skipValue(data, skipSpace(data, i)))
		if data[i] == '}' {
			return nil
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

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

// fold returns the form of key under which keys that differ only in case
// (upper-cased, then lower-cased, so that K, k and the Kelvin sign agree)
// are equal.
func fold(key []byte) string { return string(bytes.ToLower(bytes.ToUpper(key))) }

// unquote returns the text of a JSON string literal, quotes included.
func unquote(lit []byte) ([]byte, error) {
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return body, nil
	}
	var s string
	err := json.Unmarshal(lit, &s)
	return []byte(s), err
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string literal at data[i].
func skipString(data []byte, i int) int {
	for i++; data[i] != '"'; i++ {
		if data[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// skipValue returns the index just past the value at data[i].
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(data) { // a number, true, false or null
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// Member is one top-level member of a JSON object: its key, unquoted, and
// its value, raw (a slice of the object).
type Member struct {
	Key   string
	Value []byte
}

// Members returns obj's top-level members in order. obj must be one JSON
// object in UTF-8; otherwise the error is ErrNotObject.
func Members(obj []byte) ([]Member, error) {
	if !utf8.Valid(obj) || !json.Valid(obj) {
		return nil, ErrNotObject
	}
	i := skipSpace(obj, 0)
	if obj[i] != '{' {
		return nil, ErrNotObject
	}
	var ms []Member
	i = skipSpace(obj, i+1)
	if obj[i] == '}' {
		return ms, nil
	}
	for {
		end := skipString(obj, i)
		key, err := unquote(obj[i:end])
		if err != nil {
			return nil, ErrNotObject
		}
		i = skipSpace(obj, skipSpace(obj, end)+1)
		vend := skipValue(obj, i)
		ms = append(ms, Member{Key: string(key), Value: obj[i:vend]})
		i = skipSpace(obj, vend)
		if obj[i] == '}' {
			return ms, nil
		}
		i = skipSpace(obj, i+1)
	}
}

// Set returns a new JSON object: obj's members in order, byte for byte,
// except that a member whose key is in set gets set's value (once: a
// repeat of that key is dropped), and set's members that obj
// lacks appended in set's order. obj must be one JSON object in UTF-8.
func Set(obj []byte, set []Member) ([]byte, error) {
	ms, err := Members(obj)
	if err != nil {
		return nil, err
	}
	used := make([]bool, len(set))
	out := make([]byte, 0, len(obj)+64)
	out = append(out, '{')
	seen := make(map[string]bool, len(ms))
	n := 0
	put := func(key string, value []byte) {
		if n > 0 {
			out = append(out, ',')
		}
		n++
		k, _ := json.Marshal(key)
		out = append(out, k...)
		out = append(out, ':')
		out = append(out, value...)
	}
	for _, m := range ms {
		v, replaced := m.Value, false
		for j, s := range set {
			if s.Key == m.Key {
				v, used[j], replaced = s.Value, true, true
				break
			}
		}
		if replaced && seen[m.Key] {
			continue // a repeat of a replaced key: the replacement stands alone
		}
		seen[m.Key] = true
		put(m.Key, v)
	}
	for j, s := range set {
		if !used[j] && !seen[s.Key] {
			seen[s.Key] = true
			put(s.Key, s.Value)
		}
	}
	return append(out, '}'), nil
}

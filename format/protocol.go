package format

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Protocol selects a wire format: a value to put in callback.Config,
// callback.Endpoint and receiver.Config. The zero value is AppCommand.
// Protocols are comparable: two are equal when Register made them from
// the same call, or both are the zero value.
//
// A Protocol reads and writes its name as text (flag.TextVar, JSON, a
// database column): "appcommand", "tencent", "openim", or the name a
// format was registered under.
type Protocol struct {
	r *registered // nil: AppCommand
}

// registered is one Register call.
type registered struct {
	name  string
	f     Format
	allow Decision
}

// AppCommand is the format of the Java IM design imcallback started from,
// named for its query: POST {URL}?appId=..&command=.., answered by
// {"code", "msg", "data"}; code 200 allows. With a secret it carries
// Standard Webhooks signatures. It is the zero Protocol, the default.
var AppCommand = Protocol{}

// appCommandAllow is AppCommand's own allow.
var appCommandAllow = Decision{Action: Allow, Code: appCommandOK, Msg: appCommandOKMsg}

var (
	regMu    sync.RWMutex
	registry = map[string]Protocol{"appcommand": AppCommand, "seed": AppCommand}
)

// Register makes a Protocol of f under name, so that UnmarshalText reads
// it back: call it once per format, from a package-level variable's
// initializer, as packages tencent and openim do:
//
//	var Protocol = format.Register("openim", Format{})
//
// name is matched in any case and must be 1 to 16 letters, digits, '-',
// '_' or '.' (it fits sqlapps' protocol column). Register panics for an invalid or already registered name,
// a nil f, or a format whose own allow does not read back: an unkeyed
// Receiver's Encode of an Allow Decision, decoded by an unkeyed Sender,
// must be an Allow (the Dispatcher answers with it when it allows an event
// by itself).
func Register(name string, f Format) Protocol {
	if !validName(name) {
		panic(fmt.Sprintf("format: Register of invalid name %q", name))
	}
	if f == nil {
		panic("format: Register of a nil Format")
	}
	allow, err := ownAllow(f)
	if err != nil {
		panic(fmt.Sprintf("format: Register %q: %v", name, err))
	}
	key := strings.ToLower(name)
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[key]; dup {
		panic(fmt.Sprintf("format: Register called twice for %q", name))
	}
	p := Protocol{&registered{name: name, f: f, allow: allow}}
	registry[key] = p
	return p
}

// ownAllow returns f's allow as an unkeyed Sender decodes it.
func ownAllow(f Format) (Decision, error) {
	r, err := f.Receiver("", 0)
	if err != nil {
		return Decision{}, fmt.Errorf("unkeyed Receiver: %w", err)
	}
	answer, err := r.Encode(Decision{Action: Allow})
	if err != nil {
		return Decision{}, fmt.Errorf("encoding an allow: %w", err)
	}
	s, err := f.Sender("")
	if err != nil {
		return Decision{}, fmt.Errorf("unkeyed Sender: %w", err)
	}
	d, err := s.Decode(answer)
	if err != nil {
		return Decision{}, fmt.Errorf("decoding its own allow: %w", err)
	}
	if d.Action != Allow {
		return Decision{}, fmt.Errorf("its own allow decodes as %v", d.Action)
	}
	d.Data = nil
	return d, nil
}

func validName(name string) bool {
	if name == "" || len(name) > 16 {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Names returns the names of the registered protocols, sorted:
// "appcommand" and every name given to Register.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for _, p := range registry {
		names = append(names, p.String())
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Format returns p's format.
func (p Protocol) Format() Format {
	if p.r == nil {
		return appCommand{}
	}
	return p.r.f
}

// Allowed returns the Decision with which the Dispatcher allows an event
// by itself on p (a disabled command, a failed callback failing open):
// p's own allow, as the App backend's allow reads (AppCommand: 200
// "success"; Tencent and OpenIM: 0 ""), so that the IM server reads both
// alike.
func (p Protocol) Allowed() Decision {
	if p.r == nil {
		return appCommandAllow
	}
	return p.r.allow
}

// String returns p's name: "appcommand", "tencent", "openim", or the name
// it was registered under.
func (p Protocol) String() string {
	if p.r == nil {
		return "appcommand"
	}
	return p.r.name
}

// MarshalText returns p's name, for flags and configuration files.
func (p Protocol) MarshalText() ([]byte, error) {
	return []byte(p.String()), nil
}

// UnmarshalText sets p from a registered name, in any case:
// "appcommand" (or "seed", its first name), "tencent" and "openim" once
// their packages are imported (package callback and package receiver
// import both), or a name given to Register.
func (p *Protocol) UnmarshalText(text []byte) error {
	regMu.RLock()
	q, ok := registry[strings.ToLower(string(text))]
	regMu.RUnlock()
	if !ok {
		return fmt.Errorf("callback: unknown protocol %q (want one of %s)", text, strings.Join(Names(), ", "))
	}
	*p = q
	return nil
}

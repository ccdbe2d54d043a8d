// Package answer lets a tool of this module (imcallback send, replay and
// listen --forward-to) ask Dispatcher.Before for what the public API does
// not expose: the App backend's raw answer, and a webhook-id sent exactly
// as given. They are debugging and relaying aids, not part of the
// contract.
package answer

import "context"

// key marks a context that asks Before for the App's raw answer.
type key struct{}

// With returns a copy of ctx that makes Before store a copy of the App
// backend's raw answer (a 2xx body, at most Config.MaxResponseBytes) in
// *dst. *dst is left as it was when no 2xx answer was read. Before copies
// the answer only for such a ctx; others cost one context lookup.
func With(ctx context.Context, dst *[]byte) context.Context {
	return context.WithValue(ctx, key{}, dst)
}

// Keep copies answer into the destination With put in ctx, if any. Before
// calls it with each 2xx answer it reads.
func Keep(ctx context.Context, answer []byte) {
	if dst, ok := ctx.Value(key{}).(*[]byte); ok && dst != nil {
		*dst = append((*dst)[:0], answer...)
	}
}

// exactKey marks a context whose event ID Before sends as it is.
type exactKey struct{}

// ExactID returns a copy of ctx that makes Before send the ID given with
// callback.WithEventID as its webhook-id as it is, without
// callback.BeforeIDSuffix, and accept it even in the shape of the IDs a
// Dispatcher makes itself: for tools that relay a callback under the ID it
// came with (which another Dispatcher may have made).
func ExactID(ctx context.Context) context.Context {
	return context.WithValue(ctx, exactKey{}, true)
}

// IsExactID reports whether ctx came from ExactID.
func IsExactID(ctx context.Context) bool {
	exact, _ := ctx.Value(exactKey{}).(bool)
	return exact
}

// Package answer lets a tool of this module (imcallback send and replay)
// ask Dispatcher.Before for the App backend's raw answer, which the public
// API does not expose: it is a debugging aid, not part of the contract.
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

package callback

import (
	"context"
	"io"
)

// device is the end user's device behind an event, sent by formats that
// carry it (Tencent's ClientIP and OptPlatform).
type device struct {
	ip       string
	platform string
}

// deviceKey marks a context that carries a device.
type deviceKey struct{}

// WithClient returns a copy of ctx that carries the IP address and platform
// of the end user whose action caused the event. Before and After read them
// from their ctx and, with Protocol Tencent, send them as the ClientIP and
// OptPlatform query parameters; an empty value is not sent. Tencent's
// platforms are RESTAPI, Web, Android, iOS, Windows, Mac, iPad and Unknown.
// The AppCommand protocol sends neither.
//
// After reads them when it is called, so ctx may end before delivery.
func WithClient(ctx context.Context, ip, platform string) context.Context {
	return context.WithValue(ctx, deviceKey{}, device{ip: ip, platform: platform})
}

// deviceFrom returns the device WithClient put in ctx, or the zero device.
func deviceFrom(ctx context.Context) device {
	c, _ := ctx.Value(deviceKey{}).(device)
	return c
}

// statusBodyKey marks a context that asks Before for the start of a
// non-2xx answer's body.
type statusBodyKey struct{}

// WithStatusBody returns a copy of ctx that makes Before store the start
// of the body of a non-2xx answer (at most 1 KiB, the same bound as
// CheckError.Body) in *dst, for tools such as `imcallback send` that show
// why an App backend refused a callback. *dst is left as it was when the
// answer was 2xx or there was none. The body is untrusted text: quote it
// before printing it.
func WithStatusBody(ctx context.Context, dst *[]byte) context.Context {
	return context.WithValue(ctx, statusBodyKey{}, dst)
}

// keepStatusBody reads the start of a non-2xx answer's body into the
// destination WithStatusBody put in ctx, if any; the rest stays unread.
func keepStatusBody(ctx context.Context, body io.Reader) {
	if dst, ok := ctx.Value(statusBodyKey{}).(*[]byte); ok && dst != nil {
		head, _ := io.ReadAll(io.LimitReader(body, checkBodyMax))
		*dst = head
	}
}

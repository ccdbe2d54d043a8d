package callback_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// hostileCommands are command names a tenant could hand the IM server to
// reach an operator's terminal or logs: each is refused, with the byte
// position of its first offending character.
var hostileCommands = []struct {
	name, command string
	pos           int
}{
	{"ESC", "msg\x1b[2J", 3},
	{"BEL", "\x07msg", 0},
	{"NUL", "m\x00", 1},
	{"newline", "msg\nfake line", 3},
	{"DEL", "msg\x7f", 3},
	{"C1 CSI", "msg.\u009b31m", 4},
	{"C1 NEL", "\u0085", 0},
	{"RLO", "msg.\u202etxt.exe", 4},
	{"LRI", "é\u2066", 2},
	{"RLM", "msg\u200f", 3},
	{"ALM", "msg\u061c", 3},
	{"not UTF-8", "msg\xff", 3},
	{"cut UTF-8", "ms\xe2\x80", 2},
}

func TestCommandNamesArePrintable(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	d, logs := newDispatcher(t, callback.Config{URL: b.URL})
	for _, tt := range hostileCommands {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r := d.Before(ctx, 1, tt.command, []byte(`{}`))
			require.ErrorIs(t, r.Err, callback.ErrInvalidCommand, "Before")
			assert.Equal(t, callback.Allow, r.Action, "Before fails open: no rule can name an invalid command")
			assert.Contains(t, r.Err.Error(), "byte "+strconv.Itoa(tt.pos), "the error names the position")
			assert.NotContains(t, r.Err.Error(), tt.command, "the error does not carry the name")

			err := d.After(ctx, 1, tt.command, []byte(`{}`))
			require.ErrorIs(t, err, callback.ErrInvalidCommand, "After")
			assert.Contains(t, err.Error(), "byte "+strconv.Itoa(tt.pos))

			_, err = callback.New(callback.Config{URL: b.URL, Commands: map[string]callback.Rule{tt.command: {FailClosed: true}}})
			require.ErrorIs(t, err, callback.ErrInvalidConfig, "New")
			require.ErrorIs(t, err, callback.ErrInvalidCommand, "New")
			assert.Contains(t, err.Error(), "byte "+strconv.Itoa(tt.pos))

			ep := callback.Endpoint{URL: b.URL, Commands: map[string]callback.Rule{tt.command: {}}}
			assert.ErrorIs(t, ep.Validate(), callback.ErrInvalidCommand, "Endpoint.Validate")
		})
	}
	require.NoError(t, d.Close(context.Background()))
	assert.Equal(t, 0, b.count(), "nothing was sent, nothing queued")
	for _, c := range []string{"\x1b", "\x07", "\u009b", "\u202e", "\u0085"} {
		assert.NotContains(t, logs.String(), c, "a raw %q reached the failure log", c)
	}
	assert.Contains(t, logs.String(), `msg\\x1b[2J`, "the log quotes the refused name")
}

// Printable names pass, non-ASCII ones included.
func TestCommandNamesPrintablePass(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	names := []string{"C2C.CallbackBeforeSendMsg", "message.send.before", "a b", "消息.发送", "émoji 🎉", "x"}
	rules := map[string]callback.Rule{}
	for _, n := range names {
		rules[n] = callback.Rule{}
	}
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, Commands: rules})
	for _, n := range names {
		assert.NoError(t, d.Before(context.Background(), 1, n, []byte(`{}`)).Err, n)
		assert.NoError(t, d.After(context.Background(), 1, n, []byte(`{}`)), n)
	}
	assert.True(t, errors.Is(d.Before(context.Background(), 1, "", []byte(`{}`)).Err, callback.ErrInvalidCommand), "empty, as before")
	require.NoError(t, d.Close(context.Background()))
	assert.Equal(t, 2*len(names), b.count())
}

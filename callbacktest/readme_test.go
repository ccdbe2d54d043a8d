package callbacktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/command"
)

// TestSendMessage is the README's "Testing your integration" block, quoted
// verbatim (readme_test.go at the module root checks the quote) and run.
func TestSendMessage(t *testing.T) {
	secret := callbacktest.NewSecret()
	app := callbacktest.NewServer(t, callbacktest.Config{Secret: secret}) // closed when the test ends
	app.On(command.MessageSendBefore, callbacktest.Deny(40001, "banned word"))
	app.On(command.MessageSendAfter, callbacktest.Status(503), callbacktest.Allow()) // fails once, then succeeds

	d, err := callback.New(callback.Config{URL: app.URL, Secret: secret})
	require.NoError(t, err)
	defer d.Close(context.Background())
	// Drive your IM server, which calls d.Before and d.After; here, directly:
	resp := d.Before(context.Background(), 1, command.MessageSendBefore, []byte(`{"text":"spam"}`))
	require.Equal(t, callback.Deny, resp.Action)
	require.NoError(t, d.After(context.Background(), 1, command.MessageSendAfter, []byte(`{"text":"hi"}`)))

	got := app.WaitFor(5*time.Second, callbacktest.Command(command.MessageSendAfter))
	require.True(t, got.Verified, "signed with the secret")
	require.JSONEq(t, `{"text":"hi"}`, string(got.Body))
}

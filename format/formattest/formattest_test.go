package formattest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/format/formattest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every built-in format passes the table, unsigned and keyed.
func TestBuiltIn(t *testing.T) {
	for _, tt := range []struct {
		p      callback.Protocol
		secret string
	}{
		{callback.AppCommand, callbacktest.NewSecret()},
		{callback.Tencent, "t0ken"},
		{callback.OpenIM, callbacktest.NewSecret()},
	} {
		t.Run(tt.p.String(), func(t *testing.T) {
			t.Run("unsigned", func(t *testing.T) { formattest.Run(t, tt.p, "") })
			t.Run("signed", func(t *testing.T) { formattest.Run(t, tt.p, tt.secret) })
		})
	}
}

package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemo(t *testing.T) {
	for _, proto := range []string{"seed", "tencent"} {
		t.Run(proto, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(context.Background(), []string{"-demo", "-addr", "127.0.0.1:0", "-protocol", proto}, &out))
			got := out.String()
			assert.Contains(t, got, "signed: true")
			assert.Regexp(t, `"hello" +-> allow`, got)
			assert.Regexp(t, `"darn it" +-> allow .*\*\*\*\* it`, got)
			assert.Regexp(t, `"this is forbidden" +-> deny +code=120001`, got)
			if proto == "tencent" {
				assert.Regexp(t, `"win at the casino" +-> drop`, got)
			} else {
				assert.Regexp(t, `"win at the casino" +-> deny +code=403 msg="dropped"`, got, "Seed has no drop")
			}
			assert.Contains(t, got, "after-event")
			assert.NotContains(t, got, "rejected")
		})
	}
}

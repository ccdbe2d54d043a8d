package whsec_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback/internal/whsec"
)

func TestKeys(t *testing.T) {
	key24 := strings.Repeat("k", 24)
	key64 := strings.Repeat("x", 64)
	enc := func(k string) string { return "whsec_" + base64.StdEncoding.EncodeToString([]byte(k)) }

	keys, err := whsec.Keys("  " + enc(key24) + "\t" + enc(key64) + " ")
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte(key24), []byte(key64)}, keys)

	keys, err = whsec.Keys("")
	require.NoError(t, err)
	assert.Empty(t, keys)

	for secret, want := range map[string]string{
		"sk_" + enc(key24)[6:]:       "Secret 1 does not start",
		enc(key24) + " whsec_***":    "Secret 2 is not standard base64",
		enc("short"):                 "5-byte key, want 24 to 64",
		enc(strings.Repeat("y", 65)): "65-byte key",
	} {
		_, err := whsec.Keys(secret)
		require.Error(t, err, secret)
		assert.Contains(t, err.Error(), want)
		assert.NotContains(t, err.Error(), secret, "errors never contain the secret")
	}
}

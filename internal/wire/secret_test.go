package wire_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback/internal/wire"
)

func TestParseSecrets(t *testing.T) {
	key24 := strings.Repeat("k", 24)
	key64 := strings.Repeat("x", 64)
	enc := func(k string) string { return wire.FormatSecret([]byte(k)) }

	keys, err := wire.ParseSecrets("  " + enc(key24) + "\t" + enc(key64) + " ")
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte(key24), []byte(key64)}, keys)

	keys, err = wire.ParseSecrets("")
	require.NoError(t, err)
	assert.Empty(t, keys)

	for secret, want := range map[string]string{
		"sk_" + enc(key24)[6:]:       "secret 1 does not start",
		enc(key24) + " whsec_***":    "secret 2 is not standard base64",
		enc("short"):                 "5-byte key, want 24 to 64",
		enc(strings.Repeat("y", 65)): "65-byte key",
	} {
		_, err := wire.ParseSecrets(secret)
		require.Error(t, err, secret)
		assert.Contains(t, err.Error(), want)
		assert.NotContains(t, err.Error(), secret, "errors never contain the secret")
	}
}

func TestFormatSecret(t *testing.T) {
	assert.Equal(t, "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3", wire.FormatSecret([]byte("0123456789abcdef01234567")))
}

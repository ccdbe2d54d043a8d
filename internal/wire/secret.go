package wire

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Standard Webhooks secrets.
const (
	// SecretPrefix starts a Standard Webhooks secret.
	SecretPrefix = "whsec_"
	// MinKeyBytes and MaxKeyBytes bound a key, as the specification asks.
	MinKeyBytes = 24
	MaxKeyBytes = 64
)

// ParseSecrets decodes secret: one or more whsec_ secrets separated by
// white space, each the standard base64 of a 24 to 64 byte key. It returns
// no key for an empty secret. Its errors say which secret is wrong and
// never contain it.
func ParseSecrets(secret string) ([][]byte, error) {
	var keys [][]byte
	for i, s := range strings.Fields(secret) {
		enc, ok := strings.CutPrefix(s, SecretPrefix)
		if !ok {
			return nil, fmt.Errorf("secret %d does not start with %q", i+1, SecretPrefix)
		}
		key, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("secret %d is not standard base64 after %q", i+1, SecretPrefix)
		}
		if len(key) < MinKeyBytes || len(key) > MaxKeyBytes {
			return nil, fmt.Errorf("secret %d has a %d-byte key, want %d to %d bytes", i+1, len(key), MinKeyBytes, MaxKeyBytes)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// FormatSecret returns the Standard Webhooks secret of key: SecretPrefix
// and the standard base64 of key. ParseSecrets reads it back when key has
// MinKeyBytes to MaxKeyBytes bytes.
func FormatSecret(key []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

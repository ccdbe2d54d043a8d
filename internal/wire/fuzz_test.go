package wire_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/imcallback/callback/internal/wire"
)

// AppendSignature, whatever b holds before and whatever state its MAC is
// in, appends exactly the signature of the specification's formula,
// computed here with crypto/hmac directly.
func FuzzAppendSignature(f *testing.F) {
	f.Add([]byte("prefix "), []byte("0123456789abcdef01234567"), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "1674087231", []byte(`{"text":"hi"}`), []byte("garbage"))
	f.Add([]byte(nil), []byte{}, "", "", []byte{}, []byte(nil))
	f.Fuzz(func(t *testing.T, prefix, key []byte, id, ts string, body, dirt []byte) {
		mac := wire.NewMAC(key)
		_, _ = mac.Write(dirt) // a MAC left in any state
		head := wire.AppendSignedHead(nil, id, ts)
		got := wire.AppendSignature(bytes.Clone(prefix), mac, head, body)

		want := hmac.New(sha256.New, key)
		_, _ = want.Write([]byte(id + "." + ts + "."))
		_, _ = want.Write(body)
		sig := wire.SignatureVersion + base64.StdEncoding.EncodeToString(want.Sum(nil))
		if !bytes.Equal(got, append(bytes.Clone(prefix), sig...)) {
			t.Fatalf("got %q, want %q after the prefix", got, sig)
		}
		if len(sig) != wire.SignatureLen {
			t.Fatalf("signature of %d bytes, SignatureLen is %d", len(sig), wire.SignatureLen)
		}
		again := wire.AppendSignature(nil, mac, head, body)
		if string(again) != sig {
			t.Fatalf("second signature with the same MAC: %q, want %q", again, sig)
		}
	})
}

// ParseSecrets never panics; what it accepts are keys of the allowed
// sizes that FormatSecret writes back to secrets it reads the same; what
// it refuses, its error does not quote.
func FuzzParseSecrets(f *testing.F) {
	f.Add("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3")
	f.Add("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3 whsec_bm90IGJhc2U2NA")
	f.Add("whsec_" + strings.Repeat("A", 100))
	f.Add(" \t\n")
	f.Fuzz(func(t *testing.T, secret string) {
		keys, err := wire.ParseSecrets(secret)
		if err != nil {
			for _, field := range strings.Fields(secret) {
				if len(field) >= 12 && strings.Contains(err.Error(), field) {
					t.Fatalf("the error %q quotes the secret", err)
				}
			}
			return
		}
		formatted := make([]string, len(keys))
		for i, k := range keys {
			if len(k) < wire.MinKeyBytes || len(k) > wire.MaxKeyBytes {
				t.Fatalf("key %d has %d bytes", i, len(k))
			}
			formatted[i] = wire.FormatSecret(k)
		}
		back, err := wire.ParseSecrets(strings.Join(formatted, " "))
		if err != nil {
			t.Fatalf("FormatSecret's secrets do not parse: %v", err)
		}
		if len(back) != len(keys) {
			t.Fatalf("%d keys back, want %d", len(back), len(keys))
		}
		for i := range keys {
			if !bytes.Equal(back[i], keys[i]) {
				t.Fatalf("key %d changed in the round trip", i)
			}
		}
	})
}

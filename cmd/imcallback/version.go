package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/imcallback/callback/internal/wire"
)

// version returns the module version the binary was built from (a tag
// for "go install ...@v1.2.3", "(devel)" for a build in the source tree,
// with its VCS revision when the build recorded one) and the Go version.
func version() string {
	v := "(unknown)"
	info, ok := debug.ReadBuildInfo()
	if ok {
		v = info.Main.Version
		var rev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" && v == "(devel)" {
			v += " " + rev[:min(len(rev), 12)] + dirty
		}
	}
	return fmt.Sprintf("imcallback %s (%s, %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

const secretHead = `Usage: imcallback secret [flags]

Prints a new random Standard Webhooks secret, whsec_ followed by the
base64 of --bytes random bytes from crypto/rand, for Config.Secret (seed)
and for the App backend's receiver.Config.Secret.

Example:
  export CALLBACK_SECRET=$(imcallback secret)
`

func runSecret(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("secret", flag.ContinueOnError)
	n := fs.Int("bytes", 32, "the key's length in `bytes`, 24 to 64 (Standard Webhooks)")
	fs.Usage = usageFunc(fs, secretHead, "")
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *n < wire.MinKeyBytes || *n > wire.MaxKeyBytes {
		return fail(stderr, exitUsage, "imcallback secret: --bytes must be 24 to 64")
	}
	key := make([]byte, *n)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	fmt.Fprintln(stdout, wire.FormatSecret(key))
	return exitAllow
}

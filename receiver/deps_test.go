package receiver_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLightDependencies: an App backend built on receiver or callbacktest
// does not pull in the IM server's side, package callback and what it
// imports (OpenTelemetry, go-retryablehttp, gobreaker).
func TestLightDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/imcallback/callback/receiver", "github.com/imcallback/callback/callbacktest").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.Lines(string(out)) {
		dep = strings.TrimSpace(dep)
		if dep == "github.com/imcallback/callback" || strings.Contains(dep, "opentelemetry") ||
			strings.Contains(dep, "retryablehttp") || strings.Contains(dep, "gobreaker") {
			t.Errorf("receiver or callbacktest depends on %s", dep)
		}
	}
}

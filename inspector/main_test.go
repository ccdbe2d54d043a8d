package inspector_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// Dispatchers, the NATS connections and the embedded servers must all end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

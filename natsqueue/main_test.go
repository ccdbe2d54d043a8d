package natsqueue_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// Dispatcher, the Queue, the NATS connections and the embedded servers
// must all end by Close and Shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

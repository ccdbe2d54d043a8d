package natsqueue_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// Dispatcher, the Queue, the NATS connections and the embedded servers
// must all end by Close and Shutdown. Run by TestHungServerProcess as a
// NATS server process (see procServerEnv), it is that server instead.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(procServerEnv); cfg != "" {
		runProcServer(cfg)
		return
	}
	goleak.VerifyTestMain(m)
}

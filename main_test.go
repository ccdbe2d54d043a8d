package callback_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// goroutine the Dispatcher starts must end by Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

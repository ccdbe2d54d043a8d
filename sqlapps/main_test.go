package sqlapps_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// shared cache-miss query must end with its QueryTimeout at the latest.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

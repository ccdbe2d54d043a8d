package sqlapps_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/imcallback/callback/internal/dbtest"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// shared cache-miss query must end with its QueryTimeout at the latest. It
// says first which database servers are not tested.
func TestMain(m *testing.M) {
	for _, w := range dbtest.Missing() {
		fmt.Fprintln(os.Stderr, w)
	}
	goleak.VerifyTestMain(m)
}

package needs

import (
	"fmt"
	"os"
	"testing"
)

// CISuffix ends the failure message of a prerequisite missing in CI.
const CISuffix = "(CI=true: a missing prerequisite fails instead of skipping)"

// CI reports whether the tests run in CI, where nothing may be skipped
// for want of a prerequisite.
func CI() bool { return os.Getenv("CI") == "true" }

// Skip skips the test with the message, or fails it with the message and
// CISuffix when CI is true. Skips that are not about the environment
// (testing.Short, the race detector) call t.Skip directly.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s %s", msg, CISuffix)
		return
	}
	t.Skip(msg)
}

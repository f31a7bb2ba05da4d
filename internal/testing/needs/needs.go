// Package needs is how a test says the machine lacks a prerequisite (root,
// a network namespace, a kernel feature, a tool such as nft or h2spec).
// On a developer's machine the test skips. In CI (CI=true) it fails
// instead: .ci/run installs everything the suite needs, so a missing
// prerequisite there is a broken pipeline, and a green run must mean every
// test really ran.
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

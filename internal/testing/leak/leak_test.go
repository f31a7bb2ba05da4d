package leak

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeT records what Check reports instead of failing the real test.
type fakeT struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (f *fakeT) Helper()           {}
func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeT) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func leakedHere(stop <-chan struct{}) { <-stop }

func TestReportsLeftoverGoroutine(t *testing.T) {
	f := &fakeT{}
	check(f, 100*time.Millisecond)
	stop := make(chan struct{})
	defer close(stop)
	go leakedHere(stop)
	f.runCleanups()
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "leak.leakedHere") {
		t.Errorf("want one report naming leakedHere, got %q", f.errors)
	}
}

func TestWaitsForGoroutinesThatEnd(t *testing.T) {
	f := &fakeT{}
	check(f, Timeout)
	// Still running when the check starts, gone soon after: shutdown
	// that is merely slow is not a leak.
	go time.Sleep(200 * time.Millisecond)
	f.runCleanups()
	if len(f.errors) != 0 {
		t.Errorf("want no report, got %q", f.errors)
	}
}

func TestIgnoresGoroutinesThatWereThereBefore(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	go leakedHere(stop)
	f := &fakeT{}
	check(f, 100*time.Millisecond)
	f.runCleanups()
	if len(f.errors) != 0 {
		t.Errorf("want no report, got %q", f.errors)
	}
}

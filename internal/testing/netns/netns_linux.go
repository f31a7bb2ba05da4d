//go:build linux

package netns

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trellismesh/trellis/internal/testing/needs"
)

// New creates the named network namespace with lo up, removes it when the
// test ends, and returns its path. It skips the test when namespaces
// cannot be created here (fails it in CI: see package needs).
func New(t testing.TB, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		needs.Skip(t, "cannot create a network namespace (ip netns add: %v: %s)", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	IP(t, "-n", name, "link", "set", "lo", "up")
	return filepath.Join("/var/run/netns", name)
}

// IP runs the ip tool and fails the test if it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// In runs fn with the calling goroutine's thread in the namespace at path;
// sockets made in fn stay in that namespace. It reports failures with
// t.Errorf, so it may run off the test's goroutine, and returns false
// without running fn when it could not switch. If the thread cannot be
// switched back it stays locked, so the runtime discards it instead of
// reusing a thread in the wrong namespace.
func In(t testing.TB, path string, fn func()) bool {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Error(err)
		return false
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		t.Error(err)
		return false
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Errorf("setns %s: %v", path, err)
		return false
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("restoring the thread's network namespace: %v (thread left locked)", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
	return true
}

package leak

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Timeout is how long Check waits for goroutines to finish: shutdown is
// asynchronous (closed connections, stopped timers) and a loaded CI
// machine may need seconds to schedule the last of them.
const Timeout = 5 * time.Second

// ignored are goroutines that the runtime or the testing package start on
// their own schedule; they are not the code under test's to stop.
var ignored = []string{
	"testing.tRunner", // other tests (t.Parallel) and their subtests
	"testing.(*M).",
	"os/signal.signal_recv",
	"runtime.ensureSigM",
}

// Check records the goroutines running now and registers a cleanup that
// fails t if, Timeout after the test's other cleanups ran, goroutines that
// started since are still alive. Call it first, before starting anything,
// so its cleanup runs last.
func Check(t testing.TB) {
	t.Helper()
	check(t, Timeout)
}

func check(t testing.TB, timeout time.Duration) {
	before := ids(stacks())
	t.Cleanup(func() {
		var extra []string
		deadline := time.Now().Add(timeout)
		for {
			extra = extra[:0]
			for id, stack := range stacks() {
				if _, ok := before[id]; !ok && !isIgnored(stack) {
					extra = append(extra, stack)
				}
			}
			if len(extra) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(extra) > 0 {
			t.Errorf("%d goroutine(s) still running %v after the test:\n\n%s", len(extra), timeout, strings.Join(extra, "\n\n"))
		}
	})
}

func ids(m map[int]string) map[int]struct{} {
	out := make(map[int]struct{}, len(m))
	for id := range m {
		out[id] = struct{}{}
	}
	return out
}

func isIgnored(stack string) bool {
	for _, s := range ignored {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

// stacks returns every goroutine's stack but the caller's, by id.
func stacks() map[int]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[int]string{}
	for i, g := range bytes.Split(buf, []byte("\n\n")) {
		if i == 0 {
			continue // the caller's own goroutine is always listed first
		}
		s := string(g)
		// "goroutine 42 [chan receive]:"
		rest, ok := strings.CutPrefix(s, "goroutine ")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, " ")
		id, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		out[id] = s
	}
	return out
}

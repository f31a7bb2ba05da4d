package cli

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listeningAt = regexp.MustCompile(`msg=listening service=\S+ address=(\S+)`)

// TestDemoStartsAndStops runs `trellis demo reviews --listen 127.0.0.1:0`
// in-process, reaches it, and cancels its context as SIGTERM does: the
// command must exit 0.
func TestDemoStartsAndStops(t *testing.T) {
	leak.Check(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Execute(ctx, []string{"demo", "reviews", "--listen", "127.0.0.1:0"}, &stdout, &stderr)
	}()

	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; {
		if m := listeningAt.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("trellis demo reviews exited %d before listening; stderr:\n%s", code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("trellis demo reviews did not listen within 10s; stderr:\n%s", stderr.String())
		}
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/reviews/0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Reviews-Version") != "v1" {
		t.Errorf("GET /reviews/0 = %d from %q, want 200 from v1", resp.StatusCode, resp.Header.Get("X-Reviews-Version"))
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code after cancel = %d, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("trellis demo reviews did not stop within 15s of cancel")
	}
	if !strings.Contains(stderr.String(), "msg=stopped service=reviews") {
		t.Errorf("stderr lacks the stop:\n%s", stderr.String())
	}
}

func TestDemoWithoutKnownService(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo"}, "error: name the demo service to run, e.g. trellis demo reviews\n"},
		{[]string{"demo", "nope"}, "error: unknown demo service \"nope\"\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := Execute(context.Background(), tc.args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("trellis %s: exit code %d, want 2", strings.Join(tc.args, " "), code)
		}
		got := stderr.String()
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("trellis %s: stderr = %q, want it to start %q", strings.Join(tc.args, " "), got, tc.want)
		}
		for _, name := range []string{"frontend", "reviews", "ratings", "checkout-service", "refund-service", "payment-service", "sleep"} {
			if !strings.Contains(got, "\n  "+name+" ") {
				t.Errorf("trellis %s: stderr does not list %s:\n%s", strings.Join(tc.args, " "), name, got)
			}
		}
	}
}

func TestDemoSleepHasNoListenFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Execute(context.Background(), []string{"demo", "sleep", "--listen", "x"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "unknown flag: --listen") {
		t.Errorf("trellis demo sleep --listen = %d %q, want 1 and an unknown flag error", code, stderr.String())
	}
}

package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// The shop's resilience demo is examples/shop/README.md's "Resilience"
// section: as for its Security section (shop_security_test.go), this file
// runs the commands of the blocks marked with an HTML comment naming
// TestShopResilience and compares what they print with what the README
// shows, so the README is the test. The parenthesis in the comment names
// the block: "retries", "fault" or "fault removed".

var resilienceMarker = regexp.MustCompile(`(?m)^<!-- TestShopResilience runs the commands of this block \(([^)]*)\)[^\n]*-->\n` + "```" + `[a-z]*\n((?s:.*?))^` + "```")

// resilienceDemo reads the README's Resilience blocks by name.
func resilienceDemo(t *testing.T) map[string][]demoCommand {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shopDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string][]demoCommand{}
	for _, m := range resilienceMarker.FindAllStringSubmatch(string(b), -1) {
		var cmds []demoCommand
		for _, l := range strings.Split(strings.TrimSuffix(m[2], "\n"), "\n") {
			if cmd, ok := strings.CutPrefix(l, "$ "); ok {
				words, err := shellWords(cmd)
				if err != nil || len(words) < 2 || words[0] != "trellis" {
					t.Fatalf("README block (%s): %q is not a trellis command (%v)", m[1], l, err)
				}
				cmds = append(cmds, demoCommand{line: cmd, args: words[1:]})
				continue
			}
			if len(cmds) == 0 {
				t.Fatalf("README block (%s) starts with %q, not a command", m[1], l)
			}
			cmds[len(cmds)-1].want += l + "\n"
		}
		blocks[m[1]] = cmds
	}
	for _, name := range []string{"retries", "fault", "fault removed"} {
		if len(blocks[name]) == 0 {
			t.Fatalf("examples/shop/README.md has no TestShopResilience block (%s)", name)
		}
	}
	return blocks
}

// volatile are the values of a demo service's log line that differ from
// run to run: the README's block shows one run's.
var volatile = regexp.MustCompile(`\b(time|duration|from|address)=\S+`)

// runResilience runs commands in order and returns what differs from the
// README ("" when all match), ignoring the volatile log values. A command
// for which retry is true is run again until it matches or 30s pass: a
// demo service writes its log line once it has answered, and trellis up
// copies it to the log file a moment later.
func runResilience(m *uptest.Mesh, cmds []demoCommand, retry func(demoCommand) bool) string {
	var diffs []string
	for _, c := range cmds {
		want := volatile.ReplaceAllString(strings.TrimRight(c.want, "\n"), "$1=…")
		var out, errOut string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, errOut, _ = m.Trellis(ctx, c.args...)
			cancel()
			if volatile.ReplaceAllString(strings.TrimRight(out, "\n"), "$1=…") == want || !retry(c) || time.Now().After(deadline) {
				break
			}
		}
		if got := volatile.ReplaceAllString(strings.TrimRight(out, "\n"), "$1=…"); got != want {
			diffs = append(diffs, fmt.Sprintf("$ %s\nprinted:\n%s\nREADME shows:\n%s(stderr: %s)", c.line, out, c.want, errOut))
		}
	}
	return strings.Join(diffs, "\n")
}

// eventuallyResilience runs a block until it prints what the README shows:
// a config file added or removed reaches the sidecars a moment later.
func eventuallyResilience(t *testing.T, m *uptest.Mesh, cmds []demoCommand) {
	t.Helper()
	var diff string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if diff = runResilience(m, cmds, func(demoCommand) bool { return false }); diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s:\n%s", diff)
		}
	}
}

// TestShopResilience runs examples/shop/README.md's resilience demo in
// explicit mode on a copy of the shop (the user's files unchanged):
// checkout-service's sidecar retries payment-service's simulated 503, as
// payment-retries.yaml asks, and payment-service logs both tries; with
// extras/ratings-fault.yaml copied in, the callers' sidecars answer
// ratings' requests 503 and reviews shows the error in place of the stars,
// which come back once the file is gone; and without
// payment-retries.yaml the same checkout fails, so the retry was the
// config's doing.
func TestShopResilience(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole mesh")
	}
	blocks := resilienceDemo(t)
	dir := t.TempDir()
	entries, err := os.ReadDir(shopDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			copyFile(t, filepath.Join(shopDir, e.Name()), filepath.Join(dir, e.Name()))
		}
	}
	m := uptest.Start(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("retries", func(t *testing.T) {
		// The checkout runs once (a second would be pay-2 and two more
		// log lines); the log is read until it shows both tries.
		isLogs := func(c demoCommand) bool { return c.args[0] == "logs" }
		if diff := runResilience(m, blocks["retries"], isLogs); diff != "" {
			t.Error(diff)
		}
	})

	t.Run("fault", func(t *testing.T) {
		// As the README says: cp examples/shop/extras/ratings-fault.yaml
		// into the shop's folder (through a rename, so the mesh never
		// reads half a file).
		tmp := filepath.Join(t.TempDir(), "ratings-fault.yaml")
		copyFile(t, filepath.Join(shopDir, "extras", "ratings-fault.yaml"), tmp)
		if err := os.Rename(tmp, filepath.Join(dir, "ratings-fault.yaml")); err != nil {
			t.Fatal(err)
		}
		eventuallyResilience(t, m, blocks["fault"])

		// What the README says besides: the caller's sidecar answers,
		// saying why, and ratings sees nothing. The block has just run
		// with the fault in force in sleep's and reviews-v3's sidecars.
		out, errOut, code := m.Trellis(ctx, "exec", "sleep", "--", "curl", "-s", "-i", "http://ratings:9080/ratings/0")
		for _, h := range []string{"x-trellis-flags: fi\r\n", "x-trellis-details: fault_filter_abort\r\n"} {
			if !strings.Contains(strings.ToLower(out), h) {
				t.Errorf("curl -i ratings with the fault: exit %d, no %q in:\n%s%s", code, strings.TrimSpace(h), out, errOut)
			}
		}
		before := ratingsRequests(ctx, t, m)
		if diff := runResilience(m, blocks["fault"], func(demoCommand) bool { return false }); diff != "" {
			t.Fatalf("the fault block, run again:\n%s", diff)
		}
		if after := ratingsRequests(ctx, t, m); after != before {
			t.Errorf("ratings logged %d requests for /ratings/0 while the fault was in force, want none: the callers' sidecars answer", after-before)
		}

		// As the README says: rm examples/shop/ratings-fault.yaml.
		if err := os.Remove(filepath.Join(dir, "ratings-fault.yaml")); err != nil {
			t.Fatal(err)
		}
		eventuallyResilience(t, m, blocks["fault removed"])
	})

	t.Run("without payment-retries.yaml", func(t *testing.T) {
		// The README's claim that the retry is payment-retries.yaml's:
		// without it, Istio's default policy leaves the app's 503 alone,
		// and checkout-service answers 502. Each try is a new flaky
		// order: one that gets through (the file's removal not yet at
		// the sidecar) is paid.
		if err := os.Remove(filepath.Join(dir, "payment-retries.yaml")); err != nil {
			t.Fatal(err)
		}
		want := `"error": "payment-service: POST http://payment-service:9080/pay: upstream answered 503 Service Unavailable`
		deadline := time.Now().Add(30 * time.Second)
		for i := 2; ; i++ {
			body := fmt.Sprintf(`{"order":"flaky-%d","amount":5}`, i)
			out, _, _ := m.Trellis(ctx, "exec", "sleep", "--", "curl", "-s", "-X", "POST", "-d", body, "http://checkout-service:9080/checkout")
			if strings.Contains(out, want) && strings.Contains(out, `"upstreamStatus": 503`) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("checkout of a flaky order 30s after payment-retries.yaml went: %s\nwant checkout-service's 502 naming payment-service's 503", out)
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
}

// ratingsRequests counts the requests for /ratings/0 in ratings' log.
func ratingsRequests(ctx context.Context, t *testing.T, m *uptest.Mesh) int {
	t.Helper()
	out, errOut, code := m.Trellis(ctx, "logs", "ratings")
	if code != 0 {
		t.Fatalf("trellis logs ratings: exit %d: %s", code, errOut)
	}
	return strings.Count(out, "msg=request service=ratings method=GET path=/ratings/0 ")
}

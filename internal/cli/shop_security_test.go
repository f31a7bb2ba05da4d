package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/needs"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// The shop's security demo is examples/shop/README.md's "Security"
// section: this file runs the commands its marked blocks show and compares
// what they print with what the README says they print, so the README is
// the test. A block is marked by an HTML comment naming TestShopSecurity on
// the line before its fence; "(transparent mode, STRICT)" in the comment
// says when it runs, no parenthesis means in every mode on a fresh mesh.

// demoCommand is one "$ trellis ..." line of a README block and the
// output shown under it.
type demoCommand struct {
	line string
	args []string // after "trellis"
	want string
}

var demoMarker = regexp.MustCompile(`(?m)^<!-- TestShopSecurity (runs the commands of|writes) this block(?: \(([^)]*)\))?[^\n]*-->\n` + "```" + `[a-z]*\n((?s:.*?))^` + "```")

// shopDemo reads the README's marked blocks: the commands of each block by
// its condition ("" for every mode), and the YAML the test adds to its
// copy of the shop as no-sidecar.yaml.
func shopDemo(t *testing.T) (blocks map[string][]demoCommand, noSidecar string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shopDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks = map[string][]demoCommand{}
	for _, m := range demoMarker.FindAllStringSubmatch(string(b), -1) {
		if m[1] == "writes" {
			noSidecar = m[3]
			continue
		}
		var cmds []demoCommand
		for _, l := range strings.Split(strings.TrimSuffix(m[3], "\n"), "\n") {
			if cmd, ok := strings.CutPrefix(l, "$ "); ok {
				words, err := shellWords(cmd)
				if err != nil || len(words) < 2 || words[0] != "trellis" {
					t.Fatalf("README block (%s): %q is not a trellis command (%v)", m[2], l, err)
				}
				cmds = append(cmds, demoCommand{line: cmd, args: words[1:]})
				continue
			}
			if len(cmds) == 0 {
				t.Fatalf("README block (%s) starts with %q, not a command", m[2], l)
			}
			c := &cmds[len(cmds)-1]
			c.want += l + "\n"
		}
		blocks[m[2]] = cmds
	}
	for _, when := range []string{"", "transparent mode, STRICT", "transparent mode, PERMISSIVE"} {
		if len(blocks[when]) == 0 {
			t.Fatalf("examples/shop/README.md has no TestShopSecurity block (%s)", when)
		}
	}
	if noSidecar == "" {
		t.Fatal("examples/shop/README.md has no block for no-sidecar.yaml")
	}
	return blocks, noSidecar
}

// shellWords splits a command line as sh would for what the README uses:
// words separated by spaces, single quotes kept literally.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // a word has started
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote at %d", i)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == ' ':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case strings.IndexByte(`"\$|&;<>*?`+"`", c) >= 0:
			return nil, fmt.Errorf("%q needs a shell the test does not emulate", c)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// runDemo runs a README block's commands in order and returns what differs
// from the README ("" when all match). Output is compared whole, but for a
// missing final newline (curl prints the 403's body as it is).
func runDemo(m *uptest.Mesh, cmds []demoCommand) string {
	var diffs []string
	for _, c := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, errOut, _ := m.Trellis(ctx, c.args...)
		cancel()
		if strings.TrimRight(out, "\n") != strings.TrimRight(c.want, "\n") {
			diffs = append(diffs, fmt.Sprintf("$ %s\nprinted:\n%s\nREADME shows:\n%s(stderr: %s)", c.line, out, c.want, errOut))
		}
	}
	return strings.Join(diffs, "\n")
}

// testShopPayments runs the README's "every mode" block on a fresh shop
// mesh: checkout-service and refund-service reach payment-service, sleep
// and frontend get 403 RBAC: access denied.
func testShopPayments(t *testing.T, m *uptest.Mesh) {
	t.Helper()
	blocks, _ := shopDemo(t)
	// Once only: the payment ids count the payments made.
	if diff := runDemo(m, blocks[""]); diff != "" {
		t.Error(diff)
	}
}

// testExplicitGap checks what the README says explicit mode leaves open: a
// process that goes around the sidecars reaches payment-service's app.
func testExplicitGap(t *testing.T, m *uptest.Mesh) {
	t.Helper()
	st, err := local.ReadState(m.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := st.FindPod("default", "payment-service")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post("http://"+p.IP+":9080/pay", "application/json", strings.NewReader(`{"order":"o-1","amount":12.5}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status": "paid"`) {
		t.Errorf("a local process at payment-service's pod IP: %s %s; explicit mode has no capture, so the README says it is paid", resp.Status, body)
	}
}

// TestShopSecurity runs examples/shop/README.md's security demo in
// transparent mode on a copy of the shop with the README's pod without a
// sidecar added (the user's files unchanged): the payments as in explicit
// mode; under strict.yaml's mesh-wide STRICT the pod without a sidecar is
// refused at meshed pods while sleep gets through; with the user's
// PERMISSIVE variant in strict.yaml's place both are admitted (and
// payment-policy.yaml still refuses the caller without an identity).
func TestShopSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole mesh")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "transparent mode needs root (CI runs as root)")
	}
	blocks, noSidecar := shopDemo(t)
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
	if err := os.WriteFile(filepath.Join(dir, "no-sidecar.yaml"), []byte(noSidecar), 0o644); err != nil {
		t.Fatal(err)
	}
	m := uptest.Start(t, dir, "--transparent")

	t.Run("payments", func(t *testing.T) { testShopPayments(t, m) })

	t.Run("status", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, errOut, code := m.Trellis(ctx, "status")
		row := regexp.MustCompile(`(?m)^default +no-sidecar-0 +1/1 +Running +0 +\S+ +10\.244\.\d+\.\d+ +- +-$`)
		if code != 0 || !row.MatchString(out) {
			t.Errorf("trellis status: exit %d, no row for no-sidecar-0 with one container, no identity and no proxy:\n%s%s", code, out, errOut)
		}
	})

	t.Run("STRICT", func(t *testing.T) {
		eventuallyDemo(t, m, blocks["transparent mode, STRICT"])
	})

	t.Run("PERMISSIVE", func(t *testing.T) {
		// As the README says: cp examples/config-phase2/permissive.yaml /tmp/shop/strict.yaml
		// (through a rename, so the mesh never reads half a file).
		tmp := filepath.Join(t.TempDir(), "strict.yaml")
		copyFile(t, filepath.Join(repoRoot, "examples", "config-phase2", "permissive.yaml"), tmp)
		if err := os.Rename(tmp, filepath.Join(dir, "strict.yaml")); err != nil {
			t.Fatal(err)
		}
		eventuallyDemo(t, m, blocks["transparent mode, PERMISSIVE"])
	})
}

// eventuallyDemo runs a block until it prints what the README shows: a
// config edit reaches the sidecars a moment after the file changes.
func eventuallyDemo(t *testing.T, m *uptest.Mesh, cmds []demoCommand) {
	t.Helper()
	var diff string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if diff = runDemo(m, cmds); diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s:\n%s", diff)
		}
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

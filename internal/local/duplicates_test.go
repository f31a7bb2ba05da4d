package local_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// `trellis up` on a folder holding the same ServiceAccounts in a second
// file (as manifest folders often do, and as `kubectl apply -f DIR`
// accepts) starts, says nothing about them, and serves; a second file that
// redefines one of them differently is refused with TRL0005.
func TestUpIdenticalDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	const accounts = `# the same accounts as ratings.yaml and sleep.yaml, spelt differently
kind: ServiceAccount
apiVersion: v1
metadata: {namespace: default, name: ratings}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: sleep
`
	t.Run("identical", func(t *testing.T) {
		dir := copyDir(t, "testdata/small")
		writeFile(t, filepath.Join(dir, "accounts.yaml"), accounts)
		m := uptest.Start(t, dir)
		if got := curl(t, m, nil, "http://ratings:9080/ratings/1"); got[0] != "200" {
			t.Errorf("ratings answered %v", got)
		}
		for _, bad := range []string{"TRL0005", "defined twice"} {
			if strings.Contains(m.Stderr(), bad) {
				t.Errorf("stderr mentions %q for identical copies:\n%s", bad, m.Stderr())
			}
		}
	})
	t.Run("different", func(t *testing.T) {
		dir := copyDir(t, "testdata/small")
		writeFile(t, filepath.Join(dir, "accounts.yaml"), strings.Replace(accounts, "name: ratings}", "name: ratings, labels: {team: b}}", 1))
		m := uptest.StartNoWait(t, dir)
		select {
		case <-m.Done():
		case <-time.After(60 * time.Second):
			t.Fatal("trellis up did not exit on a conflicting definition")
		}
		if m.ExitCode() == 0 || strings.Contains(m.Stdout(), "mesh ready") {
			t.Fatalf("exit %d; stdout:\n%s", m.ExitCode(), m.Stdout())
		}
		for _, w := range []string{
			"Error [TRL0005] (ServiceAccount default/ratings " + filepath.Join(dir, "ratings.yaml") + "#1)",
			"is also defined at " + filepath.Join(dir, "accounts.yaml") + "#1",
			"not starting",
		} {
			if !strings.Contains(m.Stderr(), w) {
				t.Errorf("stderr lacks %q:\n%s", w, m.Stderr())
			}
		}
	})
}

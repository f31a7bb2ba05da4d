package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestSeedExamplesInForce pins what `trellis validate` says about the
// user's own examples: every field they use is in force (the retries, the
// last one, since they landed), so there is no TRL0007 warning, no
// summary line, and --strict passes.
func TestSeedExamplesInForce(t *testing.T) {
	dir := filepath.Join(repoRoot, "examples", "config")
	var out, errOut bytes.Buffer
	if code := runValidateStrict(context.Background(), &out, &errOut, []string{dir}, false, false); code != 0 {
		t.Fatalf("exit %d, want 0\n%s", code, errOut.String())
	}
	var got []string
	for _, line := range strings.Split(errOut.String(), "\n") {
		if strings.Contains(line, "[TRL0007]") {
			got = append(got, strings.ReplaceAll(line, filepath.ToSlash(dir)+"/", ""))
		}
	}
	if len(got) != 0 || strings.Contains(errOut.String(), "not in force yet (TRL0007)") {
		t.Errorf("not-in-force warnings %q, want none\nall output:\n%s", got, errOut.String())
	}

	out.Reset()
	errOut.Reset()
	if code := runValidateStrict(context.Background(), &out, &errOut, []string{dir}, false, true); code != 0 {
		t.Errorf("--strict: exit %d, want 0\n%s", code, errOut.String())
	}
}

// The phase-2 seed (PERMISSIVE mTLS) is in force as written: plaintext is
// accepted, which is what PERMISSIVE asks. --strict passes.
func TestPermissiveSeedInForce(t *testing.T) {
	dir := filepath.Join(repoRoot, "examples", "config-phase2")
	var out, errOut bytes.Buffer
	if code := runValidateStrict(context.Background(), &out, &errOut, []string{dir}, false, true); code != 0 {
		t.Fatalf("--strict: exit %d, want 0\n%s", code, errOut.String())
	}
}

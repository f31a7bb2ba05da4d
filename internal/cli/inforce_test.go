package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSeedExamplesNotInForce pins what `trellis validate` says about the
// user's own examples: exactly the fields that are not enforced yet, each
// once, with what happens instead; security policies as NOT ENFORCED. The
// exit status stays 0; --strict makes it 1.
func TestSeedExamplesNotInForce(t *testing.T) {
	dir := filepath.Join(repoRoot, "examples", "config")
	var out, errOut bytes.Buffer
	if code := runValidateStrict(context.Background(), &out, &errOut, []string{dir}, false, false); code != 0 {
		t.Fatalf("exit %d, want 0 (fields not in force are warnings)\n%s", code, errOut.String())
	}
	var got []string
	for _, line := range strings.Split(errOut.String(), "\n") {
		if strings.Contains(line, "[TRL0007]") {
			got = append(got, strings.ReplaceAll(line, filepath.ToSlash(dir)+"/", ""))
		}
	}
	want := []string{
		"warning [TRL0007] payment-retries.yaml#1 VirtualService default/payment-service: spec.http[0].retries: retries are not in force yet; requests are tried once",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("not-in-force warnings (-want +got):\n%s\nall output:\n%s", diff, errOut.String())
	}
	if !strings.Contains(errOut.String(), "1 setting not in force yet (TRL0007)") {
		t.Errorf("no summary line:\n%s", errOut.String())
	}

	out.Reset()
	errOut.Reset()
	if code := runValidateStrict(context.Background(), &out, &errOut, []string{dir}, false, true); code != 1 {
		t.Errorf("--strict: exit %d, want 1\n%s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "validation failed: 1 warning (--strict)") {
		t.Errorf("--strict does not say why it failed:\n%s", errOut.String())
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

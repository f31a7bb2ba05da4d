package needs

import (
	"fmt"
	"testing"
)

// recorder catches what Skip does, instead of ending the real test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestSkip(t *testing.T) {
	for _, tc := range []struct {
		ci                    string
		wantSkipped, wantFail string
	}{
		{"", "needs nft", ""},
		{"false", "needs nft", ""},
		{"true", "", "needs nft " + CISuffix},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			Skip(r, "needs %s", "nft")
			if r.skipped != tc.wantSkipped || r.failed != tc.wantFail {
				t.Errorf("skipped %q, failed %q; want skipped %q, failed %q", r.skipped, r.failed, tc.wantSkipped, tc.wantFail)
			}
		})
	}
}

package local_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/testing/needs"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// PeerAuthentication in transparent mode, as a user runs it: with a
// mesh-wide STRICT policy a pod without a sidecar (plain) is refused at a
// meshed pod (ratings: its capture hands the connection to the sidecar,
// which takes mTLS only) while a meshed pod (sleep, through the mTLS
// tunnel) gets through; a pod without a sidecar still reaches another
// plain pod. Switched to PERMISSIVE, both get through.
func TestUpPeerAuthenticationTransparent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "transparent mode needs root (CI runs as root)")
	}
	dir := copyDir(t, "testdata/mixed")
	policy := func(mode string) {
		t.Helper()
		y := fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: %s}}\n", mode)
		tmp := filepath.Join(t.TempDir(), "pa.yaml")
		if err := os.WriteFile(tmp, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "peer-authentication.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	policy("STRICT")
	m := uptest.Start(t, dir, "--transparent")

	// code is the HTTP status client gets from server ("000": no answer).
	code := func(client, server string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, _, _ := m.Trellis(ctx, "exec", client, "--", "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://"+server+":9080/ratings/1")
		return out
	}
	want := func(mode string, cases map[[2]string]string) {
		t.Helper()
		meshtest.Eventually(t, 30*time.Second, func() string {
			for pair, w := range cases {
				if got := code(pair[0], pair[1]); got != w {
					return fmt.Sprintf("%s: %s → %s answered %q, want %q", mode, pair[0], pair[1], got, w)
				}
			}
			return ""
		})
	}
	want("STRICT", map[[2]string]string{
		{"sleep", "ratings"}:       "200",
		{"plain", "ratings"}:       "000",
		{"plain", "plain-ratings"}: "200",
	})
	ratings := pod(t, readState(t, m), "ratings")
	if ratings.Sidecar == nil {
		t.Fatal("ratings has no sidecar")
	}
	if n := sidecarStat(t, ratings.Sidecar.AdminSocket, "listener.virtualInbound.no_filter_chain_match"); n < 1 {
		t.Errorf("ratings' sidecar counted %d refused plaintext connections, want at least 1", n)
	}

	policy("PERMISSIVE")
	want("PERMISSIVE", map[[2]string]string{
		{"sleep", "ratings"}: "200",
		{"plain", "ratings"}: "200",
	})
}

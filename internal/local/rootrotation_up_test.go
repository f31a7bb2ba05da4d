package local_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// pemCerts is every certificate of a PEM file.
func pemCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// sidecarLeaf is the workload certificate a pod's sidecar holds now.
func sidecarLeaf(t *testing.T, m *uptest.Mesh, name string) *x509.Certificate {
	t.Helper()
	p := pod(t, readState(t, m), name)
	var page struct {
		Certificates []struct {
			CertChainPEM string `json:"cert_chain_pem"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(adminGet(t, p.Sidecar.AdminSocket, "/certs")), &page); err != nil || len(page.Certificates) != 1 {
		t.Fatalf("pod %s: /certs: %v", name, err)
	}
	blk, _ := pem.Decode([]byte(page.Certificates[0].CertChainPEM))
	if blk == nil {
		t.Fatalf("pod %s: /certs shows no certificate", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The mesh's self-signed root is rotated by the running `trellis up` once
// it is within its grace period (Istio's CITADEL_SELF_SIGNED_* settings,
// here a 30 s root rotated at half life): <state>/root-cert.pem gets the
// new root and keeps the old, the sidecars renew under the new root, and
// traffic between two meshed pods keeps flowing with no failed request
// throughout.
func TestUpRotatesTheRootUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	// trellis up inherits the test's environment.
	t.Setenv("CITADEL_SELF_SIGNED_CA_CERT_TTL", "30s")
	t.Setenv("CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL", "250ms")
	t.Setenv("CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE", "50")
	dir := copyDir(t, "testdata/small")
	m := uptest.Start(t, dir)
	rootFile := filepath.Join(m.StateDir, "root-cert.pem")
	first := pemCerts(t, rootFile)[0]

	// Load from sleep to ratings, a second at a time, until the sidecars
	// hold certificates from the new root.
	stopLoad := ratingsLoad(t, m)

	var next *x509.Certificate
	eventually(t, 60*time.Second, "the root to be rotated", func() string {
		roots := pemCerts(t, rootFile)
		if roots[0].Equal(first) {
			return fmt.Sprintf("root-cert.pem holds the first root (expires %s)", first.NotAfter.Format(time.TimeOnly))
		}
		next = roots[0]
		return ""
	})
	if roots := pemCerts(t, rootFile); len(roots) < 2 || !roots[1].Equal(first) {
		t.Errorf("root-cert.pem after the rotation holds %d roots, want the new one then the old", len(roots))
	}
	if fi, err := os.Stat(rootFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("root-cert.pem: %v, mode %v; want 0600", err, fi.Mode())
	}
	eventually(t, 60*time.Second, "both sidecars to renew under the new root", func() string {
		var waiting []string
		for _, name := range []string{"sleep", "ratings"} {
			// The root may have rotated again since; any root after the
			// first will do.
			if leaf := sidecarLeaf(t, m, name); leaf.CheckSignatureFrom(first) == nil {
				waiting = append(waiting, name)
			}
		}
		if len(waiting) > 0 {
			return fmt.Sprintf("%v hold certificates from the first root", waiting)
		}
		return ""
	})
	if leaf := sidecarLeaf(t, m, "sleep"); leaf.CheckSignatureFrom(next) != nil && leaf.CheckSignatureFrom(pemCerts(t, rootFile)[0]) != nil {
		t.Error("the sleep sidecar's certificate is from neither the new root nor a later one")
	}
	// Traffic after the renewals, then the verdict on all of it.
	after := curl(t, m, nil, repeat("http://ratings:9080/ratings/0", 20)...)
	all := append(stopLoad(), after...)
	failed := 0
	for _, l := range all {
		if !strings.HasPrefix(l, "200") {
			failed++
		}
	}
	if failed > 0 || len(all) < 100 {
		t.Fatalf("%d of %d requests failed across the rotation (want 0 of at least 100): %v", failed, len(all), count(all))
	}
	t.Logf("%d requests across the root rotation, none failed", len(all))
}

// ratingsLoad sends requests from sleep to ratings, 50 a second, in the
// background from the moment it returns (it waits until they flow) until
// the returned stop, which gives every answer's status.
func ratingsLoad(t *testing.T, m *uptest.Mesh) (stop func() []string) {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		load    []string
		stopped atomic.Bool
	)
	started := outboundRequests(t, m)
	wg.Go(func() {
		for !stopped.Load() {
			got := curl(t, m, []string{"--rate", "50/s"}, repeat("http://ratings:9080/ratings/0", 50)...)
			mu.Lock()
			load = append(load, got...)
			mu.Unlock()
		}
	})
	t.Cleanup(func() { stopped.Store(true); wg.Wait() })
	waitLoad(t, m, started)
	return func() []string {
		stopped.Store(true)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return load
	}
}

package local_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// writePluginCA writes inter as an Istio plug-in CA into dir: ca-cert.pem
// and ca-key.pem its own, cert-chain.pem it and its root, root-cert.pem
// the roots given. Each file is replaced in one rename, as a user copying
// a new set in would at best; the control plane waits for the set to
// settle either way.
func writePluginCA(t *testing.T, dir string, inter *certtest.CA, roots ...*x509.Certificate) {
	t.Helper()
	kd, err := x509.MarshalPKCS8PrivateKey(inter.Key)
	if err != nil {
		t.Fatal(err)
	}
	certs := func(cs ...*x509.Certificate) string {
		var b []byte
		for _, c := range cs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return string(b)
	}
	for name, data := range map[string]string{
		"ca-cert.pem":    certs(inter.Cert),
		"ca-key.pem":     string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})),
		"cert-chain.pem": certs(append([]*x509.Certificate{inter.Cert}, inter.Chain...)...),
		"root-cert.pem":  certs(roots...),
	} {
		writeFile(t, filepath.Join(dir, name), data)
	}
}

// sidecarChain is the certificate chain a pod's sidecar presents now, as
// its /certs shows it (leaf first).
func sidecarChain(t *testing.T, m *uptest.Mesh, name string) []*x509.Certificate {
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
	var out []*x509.Certificate
	b := []byte(page.Certificates[0].CertChainPEM)
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("pod %s: /certs shows no certificate", name)
	}
	return out
}

// chainsThrough says how chain (leaf first) falls short of a leaf signed
// by inter, then inter, then root; "" when it does not.
func chainsThrough(chain []*x509.Certificate, inter *certtest.CA, root *x509.Certificate) string {
	switch {
	case chain[0].CheckSignatureFrom(inter.Cert) != nil:
		return "leaf not signed by the expected intermediate"
	case len(chain) < 3 || !chain[1].Equal(inter.Cert) || !chain[len(chain)-1].Equal(root):
		return fmt.Sprintf("chain of %d certificates is not leaf, intermediate, root", len(chain))
	}
	return ""
}

// `trellis up --plugin-ca-dir` signs every sidecar's certificate with the
// user's intermediate, its chain going to the user's root, and traffic
// flows. Replacing the plug-in files with an intermediate under a new root
// (root-cert.pem holding both roots) is picked up by the running mesh:
// <state>/root-cert.pem gets both roots, the sidecars renew under the new
// intermediate (MAX_WORKLOAD_CERT_TTL keeps their certificates short), and
// no request fails throughout.
func TestUpPluginCARotatesUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	// trellis up inherits the test's environment: 20 s certificates,
	// renewed every 10 s.
	t.Setenv("MAX_WORKLOAD_CERT_TTL", "20s")
	root1 := certtest.NewCA(t)
	inter1 := root1.Intermediate(t)
	plugin := t.TempDir()
	writePluginCA(t, plugin, inter1, root1.Cert)

	m := uptest.Start(t, copyDir(t, "testdata/small"), "--plugin-ca-dir", plugin)
	rootFile := filepath.Join(m.StateDir, "root-cert.pem")
	if roots := pemCerts(t, rootFile); len(roots) != 1 || !roots[0].Equal(root1.Cert) {
		t.Fatalf("<state>/root-cert.pem holds %d certificates, want the plug-in root alone", len(roots))
	}
	if _, err := os.Stat(filepath.Join(m.StateDir, "ca", "ca-key.pem")); err == nil {
		t.Error("the state dir got a self-signed CA key although a plug-in CA was given")
	}
	for _, name := range []string{"sleep", "ratings"} {
		leaf := sidecarChain(t, m, name)[0]
		if why := chainsThrough(sidecarChain(t, m, name), inter1, root1.Cert); why != "" {
			t.Errorf("pod %s: %s", name, why)
		}
		if ttl := leaf.NotAfter.Sub(leaf.NotBefore); ttl > 20*time.Second+time.Minute+time.Second {
			t.Errorf("pod %s: certificate lives %s, want MAX_WORKLOAD_CERT_TTL's 20s (plus backdating)", name, ttl)
		}
	}

	stopLoad := ratingsLoad(t, m)

	root2 := certtest.NewCA(t)
	inter2 := root2.Intermediate(t)
	writePluginCA(t, plugin, inter2, root2.Cert, root1.Cert)

	eventually(t, 60*time.Second, "the mesh to reload the plug-in CA", func() string {
		roots := pemCerts(t, rootFile)
		if !roots[0].Equal(root2.Cert) {
			return fmt.Sprintf("<state>/root-cert.pem leads with %q", roots[0].Subject.CommonName)
		}
		return ""
	})
	if roots := pemCerts(t, rootFile); len(roots) != 2 || !roots[1].Equal(root1.Cert) {
		t.Errorf("<state>/root-cert.pem after the reload holds %d certificates, want the new root then the old", len(roots))
	}
	eventually(t, 60*time.Second, "both sidecars to renew under the new intermediate", func() string {
		var waiting []string
		for _, name := range []string{"sleep", "ratings"} {
			if why := chainsThrough(sidecarChain(t, m, name), inter2, root2.Cert); why != "" {
				waiting = append(waiting, name+": "+why)
			}
		}
		return strings.Join(waiting, "; ")
	})

	after := curl(t, m, nil, repeat("http://ratings:9080/ratings/0", 20)...)
	all := append(stopLoad(), after...)
	failed := 0
	for _, l := range all {
		if !strings.HasPrefix(l, "200") {
			failed++
		}
	}
	if failed > 0 || len(all) < 100 {
		t.Fatalf("%d of %d requests failed across the plug-in CA's rotation (want 0 of at least 100): %v", failed, len(all), count(all))
	}
	t.Logf("%d requests across the plug-in CA's rotation, none failed", len(all))
}

// A plug-in CA that does not hang together stops `trellis up` before any
// pod starts, with the control plane's error naming the file at fault.
func TestUpRefusesABadPluginCA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	root := certtest.NewCA(t)
	inter := root.Intermediate(t)
	stranger := certtest.NewCA(t)
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, dir string)
		want  []string
	}{
		{"missing files", func(t *testing.T, dir string) {}, []string{"cannot start the CA", "ca-cert.pem", "no such file"}},
		{"root-cert.pem is another root", func(t *testing.T, dir string) {
			writePluginCA(t, dir, inter, stranger.Cert)
		}, []string{"cannot start the CA", "ca-cert.pem: does not chain to a root in", "root-cert.pem"}},
		{"ca-key.pem is another key", func(t *testing.T, dir string) {
			writePluginCA(t, dir, inter, root.Cert)
			kd, err := x509.MarshalPKCS8PrivateKey(stranger.Key)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "ca-key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})))
		}, []string{"cannot start the CA", "ca-cert.pem and", "ca-key.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plugin := t.TempDir()
			tc.write(t, plugin)
			m := uptest.StartNoWait(t, "testdata/small", "--plugin-ca-dir", plugin)
			select {
			case <-m.Done():
			case <-time.After(60 * time.Second):
				t.Fatal("trellis up did not exit on a bad plug-in CA")
			}
			if m.ExitCode() == 0 {
				t.Fatalf("exit 0 on a bad plug-in CA\nstdout:\n%s", m.Stdout())
			}
			for _, w := range append(tc.want, plugin) {
				if !strings.Contains(m.Stderr(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, m.Stderr())
				}
			}
			// No pod got as far as a line, a log or a state entry.
			if out := m.Stdout(); strings.Contains(out, "pod ") {
				t.Errorf("pods started on a bad plug-in CA:\n%s", out)
			}
			logs, _ := os.ReadDir(filepath.Join(m.StateDir, "logs"))
			for _, e := range logs {
				if e.Name() != "controlplane.log" {
					t.Errorf("%s in the state dir's logs: a pod started on a bad plug-in CA", e.Name())
				}
			}
		})
	}
}

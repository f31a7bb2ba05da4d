package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/trellismesh/trellis/internal/identity"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/xds"
)

// errorLog keeps the control plane's Error records.
type errorLog struct {
	mu   sync.Mutex
	errs []string
}

func (e *errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (e *errorLog) Handle(_ context.Context, r slog.Record) error {
	s := r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	e.mu.Lock()
	e.errs = append(e.errs, s)
	e.mu.Unlock()
	return nil
}
func (e *errorLog) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *errorLog) WithGroup(string) slog.Handler      { return e }

func (e *errorLog) has(substr string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.errs {
		if strings.Contains(s, substr) {
			return true
		}
	}
	return false
}

// startLogged is startSecure with the control plane's log kept.
func startLogged(t *testing.T, opts Options) (*ControlPlane, *errorLog) {
	t.Helper()
	lis, secure := mustListen(t), mustListen(t)
	rec := &errorLog{}
	opts.ConfigPaths = []string{t.TempDir()}
	opts.XDSListener, opts.SecureXDSListener = lis, secure
	opts.Log = slog.New(rec)
	cp, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Stop() })
	return cp, rec
}

func writePluginFiles(t *testing.T, dir string, inter *certtest.CA, chain []*x509.Certificate, roots ...*x509.Certificate) {
	t.Helper()
	kd, err := x509.MarshalPKCS8PrivateKey(inter.Key)
	if err != nil {
		t.Fatal(err)
	}
	certs := func(cs ...*x509.Certificate) []byte {
		var b []byte
		for _, c := range cs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return b
	}
	for name, data := range map[string][]byte{
		identity.CACertFile:    certs(inter.Cert),
		identity.CAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}),
		identity.CertChainFile: certs(chain...),
		identity.RootCertFile:  certs(roots...),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// bundleFile is the certificates of a published root-cert.pem.
func bundleFile(t *testing.T, path string) []*x509.Certificate {
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

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newCert is a workload certificate from the running control plane, as a
// sidecar gets one at start.
func newCert(t *testing.T, cp *ControlPlane) *tls.Certificate {
	t.Helper()
	tok, err := cp.IssueCredential("default", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	c, err := certify(t, cp, tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// servedBy is the secure port's certificate chain, verified against the
// given roots only.
func servedBy(t *testing.T, cp *ControlPlane, roots ...*x509.Certificate) error {
	t.Helper()
	p := x509.NewCertPool()
	for _, r := range roots {
		p.AddCert(r)
	}
	conn, err := tls.Dial("tcp", cp.SecureAddr().String(), &tls.Config{RootCAs: p, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err == nil {
		conn.Close()
	}
	return err
}

// bothRoots: the CA has switched to the new root. The file is written
// first (so a proxy trusts a new root before it can meet it), and the
// test's clients take their roots from the CA.
func bothRoots(cp *ControlPlane) bool {
	return strings.Count(string(cp.RootCertPEM()), "BEGIN CERTIFICATE") == 2
}

var reviewsNode = &corev3.Node{Id: xds.NodeID("127.0.0.10", "reviews-0", "default")}

// Replacing the plug-in CA's files under a running control plane: the
// bundle file gets both roots, new certificates (and the secure port's)
// come from the new intermediate and chain to the new root, a proxy
// holding a certificate from the old root still gets its config while
// the bundle has both, and a broken replacement keeps the CA it had with
// an Error saying why.
func TestPluginCAReloadedWhileRunning(t *testing.T) {
	leak.Check(t)
	root1, root2 := certtest.NewCA(t), certtest.NewCA(t)
	inter1, inter2 := root1.Intermediate(t), root2.Intermediate(t)
	dir := t.TempDir()
	writePluginFiles(t, dir, inter1, []*x509.Certificate{inter1.Cert, root1.Cert}, root1.Cert)
	bundle := filepath.Join(t.TempDir(), "root-cert.pem")
	cp, rec := startLogged(t, Options{PluginCADir: dir, PluginCACheckInterval: 10 * time.Millisecond, RootCertFile: bundle})
	if got := bundleFile(t, bundle); len(got) != 1 || !got[0].Equal(root1.Cert) {
		t.Fatal("root-cert.pem at start is not the plug-in CA's root")
	}
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root-cert.pem: %v, mode %v; want 0600", err, fi.Mode())
	}
	old := newCert(t, cp)
	if old.Leaf.CheckSignatureFrom(inter1.Cert) != nil {
		t.Fatal("the first certificate is not from intermediate 1")
	}

	// Istio's way: a new intermediate under a new root, root-cert.pem
	// holding both while workloads move over.
	writePluginFiles(t, dir, inter2, []*x509.Certificate{inter2.Cert, root2.Cert}, root2.Cert, root1.Cert)
	waitUntil(t, "root-cert.pem to hold both roots", func() bool { return len(bundleFile(t, bundle)) == 2 && bothRoots(cp) })
	got := bundleFile(t, bundle)
	if !got[0].Equal(root2.Cert) || !got[1].Equal(root1.Cert) {
		t.Fatal("root-cert.pem is not root 2 then root 1")
	}
	cert := newCert(t, cp)
	if cert.Leaf.CheckSignatureFrom(inter2.Cert) != nil {
		t.Fatal("a certificate issued after the reload is not from intermediate 2")
	}
	if last, _ := x509.ParseCertificate(cert.Certificate[len(cert.Certificate)-1]); last == nil || !last.Equal(root2.Cert) {
		t.Fatal("its chain does not end at root 2")
	}
	if err := servedBy(t, cp, root2.Cert); err != nil {
		t.Errorf("the secure port's certificate is not from the new root: %v", err)
	}
	for name, c := range map[string]*tls.Certificate{"old root": old, "new root": cert} {
		if _, err := firstDelta(t, dialSecure(t, cp, c), reviewsNode); err != nil {
			t.Errorf("ADS with a certificate from the %s: %v", name, err)
		}
	}

	// A broken replacement (another CA's key) keeps intermediate 2.
	other := certtest.NewCA(t)
	writePluginFiles(t, dir, &certtest.CA{Cert: inter2.Cert, Key: other.Key}, []*x509.Certificate{inter2.Cert, root2.Cert}, root2.Cert)
	waitUntil(t, "an Error about the broken plug-in CA", func() bool { return rec.has("cannot be used") })
	if !rec.has(dir) {
		t.Error("the Error does not name the plug-in CA's folder")
	}
	if c := newCert(t, cp); c.Leaf.CheckSignatureFrom(inter2.Cert) != nil {
		t.Error("after a broken replacement the CA no longer signs as intermediate 2")
	}
	if got := bundleFile(t, bundle); len(got) != 2 {
		t.Errorf("a broken replacement changed root-cert.pem to %d roots", len(got))
	}
	if _, err := firstDelta(t, dialSecure(t, cp, old), reviewsNode); err != nil {
		t.Errorf("a broken replacement cut off the old root's certificates: %v", err)
	}
}

// A self-signed root within its grace period is rotated by the running
// control plane: the bundle file holds the new and the old root, new
// certificates and the secure port's chain to the new root, and a proxy
// with a certificate from the old root still gets its config.
func TestSelfSignedRootRotatedWhileRunning(t *testing.T) {
	leak.Check(t)
	caDir := filepath.Join(t.TempDir(), "ca")
	bundle := filepath.Join(t.TempDir(), "root-cert.pem")
	cp, _ := startLogged(t, Options{CADir: caDir, RootCertFile: bundle, RootTTL: 10 * time.Second, RootCheckInterval: 20 * time.Millisecond, RootGracePeriodPercent: 50})
	first := cp.CA().Root()
	old := newCert(t, cp)
	waitUntil(t, "the root to be rotated", func() bool { return len(bundleFile(t, bundle)) == 2 && bothRoots(cp) })
	got := bundleFile(t, bundle)
	if got[0].Equal(first) || !got[1].Equal(first) {
		t.Fatal("root-cert.pem is not the new root then the old")
	}
	// The CA dir's root-cert.pem, what `trellis controlplane`'s sidecars
	// trust, is the same bundle.
	if kept := bundleFile(t, filepath.Join(caDir, identity.RootCertFile)); len(kept) != 2 || !kept[0].Equal(got[0]) {
		t.Error("the CA dir's root-cert.pem is not the bundle")
	}
	cert := newCert(t, cp)
	if err := cert.Leaf.CheckSignatureFrom(got[0]); err != nil {
		t.Errorf("a certificate issued after the rotation is not from the new root: %v", err)
	}
	if err := servedBy(t, cp, got[0]); err != nil {
		t.Errorf("the secure port's certificate is not from the new root: %v", err)
	}
	if _, err := firstDelta(t, dialSecure(t, cp, old), reviewsNode); err != nil {
		t.Errorf("ADS with a certificate from the old root: %v", err)
	}
}

// Istio's environment variables set the rotator when the options do not;
// bad values stop the start naming the variable.
func TestRotationFromEnv(t *testing.T) {
	t.Setenv(envRootTTL, "48h")
	t.Setenv(envRootCheckInterval, "5m")
	t.Setenv(envRootGracePercent, "30%")
	r, err := rotationFromEnv(Options{})
	if err != nil || r != (rotation{rootTTL: 48 * time.Hour, checkInterval: 5 * time.Minute, gracePct: 30}) {
		t.Fatalf("got %+v, %v", r, err)
	}
	if r, _ := rotationFromEnv(Options{RootCheckInterval: time.Minute, RootGracePeriodPercent: 10}); r.checkInterval != time.Minute || r.gracePct != 10 {
		t.Errorf("options do not win over the environment: %+v", r)
	}
	t.Setenv(envRootCheckInterval, "0")
	if r, _ := rotationFromEnv(Options{}); r.checkInterval > 0 {
		t.Errorf("%s=0 should turn the rotator off, as in Istio: %+v", envRootCheckInterval, r)
	}
	t.Setenv(envRootCheckInterval, "")
	t.Setenv(envRootTTL, "")
	t.Setenv(envRootGracePercent, "")
	if r, _ := rotationFromEnv(Options{}); r != (rotation{rootTTL: identity.RootTTL, checkInterval: time.Hour, gracePct: 20}) {
		t.Errorf("defaults: %+v, want Istio's", r)
	}
	for name, v := range map[string]string{envRootTTL: "ten years", envRootGracePercent: "lots", envRootCheckInterval: "1 hour"} {
		t.Setenv(name, v)
		_, err := rotationFromEnv(Options{})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v, want an error naming it", name, v, err)
		}
		t.Setenv(name, "")
	}
	t.Setenv(envRootGracePercent, "100")
	if _, err := rotationFromEnv(Options{}); err == nil {
		t.Error("a grace period of 100% accepted")
	}
}

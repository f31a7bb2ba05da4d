package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/certtest"
)

var (
	checkout = ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "checkout"}
	payment  = ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "payment"}
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newCA(t testing.TB, o CAOptions) *CA {
	t.Helper()
	o.Log = quiet()
	ca, err := NewCA(o)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// csrFor makes a key and a CSR that claims every name a forger might try.
func csrFor(t testing.TB, claims ...string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key, csrWithKey(t, key, claims...)
}

func csrWithKey(t testing.TB, key crypto.Signer, claims ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "payment.shop.svc", Organization: []string{"forged"}},
		DNSNames:       []string{"payment.shop.svc.cluster.local"},
		EmailAddresses: []string{"root@example.com"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1")},
	}
	for _, c := range claims {
		u, err := url.Parse(c)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// parseChain reads a PEM chain, leaf first.
func parseChain(t testing.TB, chain []string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for i, p := range chain {
		b, rest := pem.Decode([]byte(p))
		if b == nil || b.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
			t.Fatalf("cert_chain[%d] is not exactly one PEM certificate: %q", i, p)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// verify checks leaf against roots with the chain's middle as
// intermediates, for client and server use.
func verify(chain []*x509.Certificate, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return err
		}
	}
	return nil
}

func poolOf(cs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p
}

// The certificate names the identity Sign was given and nothing the CSR
// asked for; it carries the CSR's key; it is an SVID Istio's proxies
// accept.
func TestSignTakesOnlyTheKeyFromTheCSR(t *testing.T) {
	ca := newCA(t, CAOptions{})
	key, csr := csrFor(t, payment.String(), "https://evil.example/")
	before := time.Now()
	chain, err := ca.Sign(csr, checkout, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certs := parseChain(t, chain)
	if len(certs) != 2 {
		t.Fatalf("chain has %d certificates, want leaf and root", len(certs))
	}
	leaf := certs[0]
	if !certs[1].Equal(ca.Root()) {
		t.Fatal("chain does not end in the root")
	}
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	if diff := cmp.Diff([]string{checkout.String()}, uris); diff != "" {
		t.Errorf("URI SANs (-want +got):\n%s", diff)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.Subject.CommonName != "" || len(leaf.Subject.Organization) != 0 {
		t.Errorf("leaf took names from the CSR: DNS %v IP %v email %v subject %q", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.Subject)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("leaf does not carry the CSR's key")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("KeyUsage = %b", leaf.KeyUsage)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage); diff != "" {
		t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if !leaf.NotBefore.Before(before.Add(-time.Second)) {
		t.Errorf("NotBefore %s is not backdated for clock skew (issued at %s)", leaf.NotBefore, before)
	}
	if d := leaf.NotAfter.Sub(before); d < time.Hour-2*time.Second || d > time.Hour+2*time.Second {
		t.Errorf("NotAfter is %s after issue, want 1h", d)
	}
	if err := verify(certs, ca.Roots()); err != nil {
		t.Fatalf("leaf does not verify against the roots: %v", err)
	}
	id, err := FromCertificate(leaf)
	if err != nil || id != checkout {
		t.Fatalf("FromCertificate = %v, %v", id, err)
	}
}

func TestSignTTL(t *testing.T) {
	ca := newCA(t, CAOptions{MaxTTL: 48 * time.Hour})
	for _, tc := range []struct {
		ask, want time.Duration
	}{
		{0, DefaultTTL},
		{-time.Hour, DefaultTTL},
		{2 * time.Hour, 2 * time.Hour},
		{1000 * time.Hour, 48 * time.Hour},
	} {
		_, csr := csrFor(t)
		now := time.Now()
		chain, err := ca.Sign(csr, checkout, tc.ask)
		if err != nil {
			t.Fatal(err)
		}
		got := parseChain(t, chain)[0].NotAfter.Sub(now)
		if got < tc.want-2*time.Second || got > tc.want+2*time.Second {
			t.Errorf("ttl %s: lives %s, want %s", tc.ask, got, tc.want)
		}
	}
	if _, err := NewCA(CAOptions{DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour, Log: quiet()}); err == nil || !strings.Contains(err.Error(), "longer than the maximum") {
		t.Errorf("default TTL above the maximum: %v", err)
	}
}

// A certificate never outlives the CA certificate that signed it.
func TestSignCappedByCAExpiry(t *testing.T) {
	dir := t.TempDir()
	root := certtest.NewCA(t)
	inter := root.Intermediate(t)
	// Reissue the intermediate to expire in two hours.
	tmpl := *inter.Cert
	tmpl.NotAfter = time.Now().Add(2 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, root.Cert, &inter.Key.PublicKey, root.Key)
	if err != nil {
		t.Fatal(err)
	}
	short, _ := x509.ParseCertificate(der)
	writePlugin(t, dir, short, inter.Key, []*x509.Certificate{short, root.Cert}, root.Cert)
	ca := newCA(t, CAOptions{PluginDir: dir})
	_, csr := csrFor(t)
	chain, err := ca.Sign(csr, checkout, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseChain(t, chain)[0].NotAfter; !got.Equal(short.NotAfter) {
		t.Fatalf("leaf expires %s, after its CA (%s)", got, short.NotAfter)
	}
}

func TestSignRefusesBadCSRs(t *testing.T) {
	ca := newCA(t, CAOptions{})
	_, csr := csrFor(t)
	tampered := append([]byte(nil), csr...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	if _, err := ca.Sign(tampered, checkout, 0); err == nil || !strings.Contains(err.Error(), "csr:") {
		t.Errorf("tampered CSR: %v", err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Sign(csrWithKey(t, weak), checkout, 0); err == nil || !strings.Contains(err.Error(), "at least 2048 bits") {
		t.Errorf("RSA-1024 CSR: %v", err)
	}
	if _, err := ca.Sign([]byte("junk"), checkout, 0); err == nil || !strings.Contains(err.Error(), "csr:") {
		t.Errorf("junk CSR: %v", err)
	}
	_, csr = csrFor(t)
	if _, err := ca.Sign(csr, ID{TrustDomain: "cluster.local", Namespace: "shop"}, 0); err == nil || !strings.Contains(err.Error(), "serviceAccount: must not be empty") {
		t.Errorf("identity without a service account: %v", err)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// The root is made once, kept private, and reused by the next start.
func TestRootKeptInDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "ca")
	ca1 := newCA(t, CAOptions{Dir: dir})
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("CA dir mode %o, want 700", got)
	}
	for _, f := range []string{CACertFile, CAKeyFile} {
		if got := mode(t, filepath.Join(dir, f)); got != 0o600 {
			t.Errorf("%s mode %o, want 600", f, got)
		}
	}
	root := ca1.Root()
	if !root.IsCA || root.NotAfter.Sub(root.NotBefore) < RootTTL {
		t.Errorf("root: CA %v, lives %s, want 10 years", root.IsCA, root.NotAfter.Sub(root.NotBefore))
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("root key %T, want ECDSA P-256", root.PublicKey)
	}
	_, csr := csrFor(t)
	chain, err := ca1.Sign(csr, checkout, 0)
	if err != nil {
		t.Fatal(err)
	}

	// Someone loosened the modes; the next start tightens them.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	ca2 := newCA(t, CAOptions{Dir: dir})
	if !ca2.Root().Equal(root) {
		t.Fatal("restart made a new root instead of reusing the kept one")
	}
	if err := verify(parseChain(t, chain), ca2.Roots()); err != nil {
		t.Fatalf("a certificate issued before the restart does not verify after it: %v", err)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("after restart CA dir mode %o, want 700", got)
	}
	if got := mode(t, filepath.Join(dir, CAKeyFile)); got != 0o600 {
		t.Errorf("after restart key mode %o, want 600", got)
	}

	// A key that is not the root's is an error that says what to do.
	other := t.TempDir()
	newCA(t, CAOptions{Dir: other})
	data, err := os.ReadFile(filepath.Join(other, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCA(CAOptions{Dir: dir, Log: quiet()}); err == nil || !strings.Contains(err.Error(), "remove both to make a new root") {
		t.Fatalf("mismatched key: %v", err)
	}
}

// After a rotation the bundle holds both roots: certificates from the old
// one still verify, new ones chain to the new one; RemoveOldRoots ends the
// old one's trust. The state survives a restart.
func TestRotateRoot(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, CAOptions{Dir: dir})
	oldRoot := ca.Root()
	gen := ca.Generation()
	_, csr := csrFor(t)
	oldLeaf, err := ca.Sign(csr, checkout, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Rotate(); err != nil {
		t.Fatal(err)
	}
	newRoot := ca.Root()
	if newRoot.Equal(oldRoot) {
		t.Fatal("Rotate kept the root")
	}
	if ca.Generation() == gen {
		t.Error("Rotate did not change the generation")
	}
	if err := verify(parseChain(t, oldLeaf), ca.Roots()); err != nil {
		t.Fatalf("old root's certificate does not verify against the bundle after rotation: %v", err)
	}
	bundle := parsePEMCerts(t, ca.RootsPEM())
	if len(bundle) != 2 || !bundle[0].Equal(newRoot) || !bundle[1].Equal(oldRoot) {
		t.Fatalf("bundle after rotation: %d roots, want the new one then the old one", len(bundle))
	}
	_, csr = csrFor(t)
	newLeaf, err := ca.Sign(csr, checkout, 0)
	if err != nil {
		t.Fatal(err)
	}
	nl := parseChain(t, newLeaf)
	if !nl[len(nl)-1].Equal(newRoot) {
		t.Fatal("new certificate's chain does not end in the new root")
	}
	if err := verify(nl, poolOf(newRoot)); err != nil {
		t.Fatalf("new certificate does not verify against the new root alone: %v", err)
	}
	if err := verify(nl, poolOf(oldRoot)); err == nil {
		t.Fatal("new certificate verifies against the old root")
	}

	restarted := newCA(t, CAOptions{Dir: dir})
	if !restarted.Root().Equal(newRoot) {
		t.Fatal("restart after rotation signs with the old root")
	}
	if err := verify(parseChain(t, oldLeaf), restarted.Roots()); err != nil {
		t.Fatalf("after restart the old root is no longer trusted: %v", err)
	}
	if got := mode(t, filepath.Join(dir, OldRootsFile)); got != 0o600 {
		t.Errorf("%s mode %o, want 600", OldRootsFile, got)
	}

	if err := restarted.RemoveOldRoots(); err != nil {
		t.Fatal(err)
	}
	if err := verify(parseChain(t, oldLeaf), restarted.Roots()); err == nil {
		t.Fatal("old root's certificate still verifies after RemoveOldRoots")
	}
	if err := verify(nl, newCA(t, CAOptions{Dir: dir}).Roots()); err != nil {
		t.Fatal(err)
	}
	if err := verify(parseChain(t, oldLeaf), newCA(t, CAOptions{Dir: dir}).Roots()); err == nil {
		t.Fatal("old root trusted again after a restart")
	}
}

func parsePEMCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func writePlugin(t *testing.T, dir string, caCert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate, roots ...*x509.Certificate) {
	t.Helper()
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		CACertFile:    certPEM(caCert),
		CAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}),
		CertChainFile: pemAll(chain),
		RootCertFile:  pemAll(roots),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A plug-in CA signs as the intermediate it was given: leaf → ca-cert →
// … → root, and workloads trust root-cert.pem.
func TestPluginCA(t *testing.T) {
	root := certtest.NewCA(t)
	mid := root.Intermediate(t)
	inter := mid.Intermediate(t)
	dir := t.TempDir()
	// Istio's tools write cert-chain.pem as ca-cert then up to the root.
	writePlugin(t, dir, inter.Cert, inter.Key, []*x509.Certificate{inter.Cert, mid.Cert, root.Cert}, root.Cert)
	ca := newCA(t, CAOptions{PluginDir: dir})
	_, csr := csrFor(t)
	chain, err := ca.Sign(csr, checkout, 0)
	if err != nil {
		t.Fatal(err)
	}
	certs := parseChain(t, chain)
	if len(certs) != 4 || !certs[1].Equal(inter.Cert) || !certs[2].Equal(mid.Cert) || !certs[3].Equal(root.Cert) {
		t.Fatalf("chain is %d certificates, want leaf, ca-cert, its issuer, root", len(certs))
	}
	if err := verify(certs, root.Pool()); err != nil {
		t.Fatal(err)
	}
	if got := parsePEMCerts(t, ca.RootsPEM()); len(got) != 1 || !got[0].Equal(root.Cert) {
		t.Fatal("trust bundle is not root-cert.pem")
	}
	if err := ca.Rotate(); err == nil || !strings.Contains(err.Error(), "replacing its files") {
		t.Errorf("Rotate on a plug-in CA: %v", err)
	}
	// The files Istio's tools write when a root is being replaced:
	// root-cert.pem with both roots. Both stay trusted.
	other := certtest.NewCA(t)
	writePlugin(t, dir, inter.Cert, inter.Key, []*x509.Certificate{mid.Cert}, root.Cert, other.Cert)
	ca = newCA(t, CAOptions{PluginDir: dir})
	if got := parsePEMCerts(t, ca.RootsPEM()); len(got) != 2 || !got[0].Equal(root.Cert) || !got[1].Equal(other.Cert) {
		t.Fatal("trust bundle does not carry both roots of root-cert.pem, the signing one first")
	}
	if !ca.Root().Equal(root.Cert) {
		t.Fatal("Root is not the root ca-cert chains to")
	}

	for name, tc := range map[string]struct {
		caCert *x509.Certificate
		key    crypto.Signer
		chain  []*x509.Certificate
		roots  []*x509.Certificate
		want   string
	}{
		"key of another cert": {inter.Cert, mid.Key, []*x509.Certificate{mid.Cert}, []*x509.Certificate{root.Cert}, "the key is not the certificate's"},
		"wrong root":          {inter.Cert, inter.Key, []*x509.Certificate{mid.Cert}, []*x509.Certificate{other.Cert}, "does not chain to a root in"},
		"missing link":        {inter.Cert, inter.Key, nil, []*x509.Certificate{root.Cert}, "does not chain to a root in"},
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			writePlugin(t, d, tc.caCert, tc.key, tc.chain, tc.roots...)
			if tc.chain == nil {
				os.Remove(filepath.Join(d, CertChainFile))
			}
			_, err := NewCA(CAOptions{PluginDir: d, Log: quiet()})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), d) {
				t.Fatalf("got %v, want an error naming the dir and %q", err, tc.want)
			}
		})
	}
	d := t.TempDir()
	leaf := root.Leaf(t, checkout.String(), certtest.LeafOptions{})
	writePlugin(t, d, leaf.Leaf, leaf.PrivateKey.(crypto.Signer), nil, root.Cert)
	if _, err := NewCA(CAOptions{PluginDir: d, Log: quiet()}); err == nil || !strings.Contains(err.Error(), "is not a CA certificate") {
		t.Fatalf("leaf as ca-cert: %v", err)
	}
}

// The control plane's serving certificate is renewed past half its life
// and after a root rotation.
func TestServingCertRenews(t *testing.T) {
	ca := newCA(t, CAOptions{})
	sc := &ServingCert{CA: ca, DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, TTL: time.Hour}
	c1, err := sc.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if c2, _ := sc.Certificate(); c2 != c1 {
		t.Fatal("a fresh serving certificate was replaced")
	}
	if err := verify([]*x509.Certificate{c1.Leaf}, ca.Roots()); err != nil {
		t.Fatal(err)
	}
	if err := c1.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	sc.mu.Lock()
	sc.renewAt = time.Now().Add(-time.Second) // as if half its life had passed
	sc.mu.Unlock()
	c3, err := sc.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if c3 == c1 {
		t.Fatal("not renewed past half its life")
	}
	if got := c3.Leaf.NotAfter.Sub(c3.Leaf.NotBefore); got < time.Hour {
		t.Fatalf("renewed certificate lives %s", got)
	}
	if err := ca.Rotate(); err != nil {
		t.Fatal(err)
	}
	c4, err := sc.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if c4 == c3 {
		t.Fatal("not renewed after the root rotated")
	}
	if err := verify([]*x509.Certificate{c4.Leaf}, poolOf(ca.Root())); err != nil {
		t.Fatal(err)
	}
}

package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Istio's names for a CA's files: a plug-in CA directory holds all four
// (ca-cert.pem signs, chained by cert-chain.pem up to a root in
// root-cert.pem); the self-signed root's directory holds ca-cert.pem and
// ca-key.pem (the root is its own CA cert) and OldRootsFile.
const (
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	RootCertFile  = "root-cert.pem"
	CertChainFile = "cert-chain.pem"
	// OldRootsFile holds roots replaced by Rotate that the trust bundle
	// still carries, so certificates they issued keep verifying until
	// RemoveOldRoots.
	OldRootsFile = "old-roots.pem"
)

// Defaults, as Istio's (DEFAULT_WORKLOAD_CERT_TTL, MAX_WORKLOAD_CERT_TTL,
// a self-signed root's lifetime).
const (
	DefaultTTL    = 24 * time.Hour
	DefaultMaxTTL = 90 * 24 * time.Hour
	RootTTL       = 10 * 365 * 24 * time.Hour
)

// ErrInvalidCSR marks errors in what the caller sent, rather than in the
// CA.
var ErrInvalidCSR = errors.New("csr")

// maxBackdate is how far before issuance a certificate starts, so a peer
// whose clock is a little behind accepts it at once.
const maxBackdate = time.Minute

// CAOptions configure a CA.
type CAOptions struct {
	// Dir keeps the self-signed root (created with mode 0700, files 0600)
	// so it survives a restart. Empty: the root lives in memory only.
	Dir string
	// PluginDir, when set, is a user-supplied CA in Istio's plug-in layout
	// (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); Dir is then
	// not used.
	PluginDir string
	// TrustDomain names the organization of a generated root (default
	// cluster.local, as Istio's self-signed root).
	TrustDomain string
	// DefaultTTL is a certificate's lifetime when the caller asks for none
	// (default 24h); MaxTTL caps what a caller may ask for (default 90
	// days).
	DefaultTTL, MaxTTL time.Duration
	// RootTTL is a self-signed root's lifetime (default ten years, as
	// Istio's CITADEL_SELF_SIGNED_CA_CERT_TTL).
	RootTTL time.Duration
	// Publish, when set, is given the trust bundle (PEM) at start and
	// each time it changes, before the CA signs anything under the new
	// bundle: everyone then trusts a new root before they can meet a
	// certificate from it. An error stops the change (the CA keeps
	// signing as before).
	Publish func(bundlePEM []byte) error
	Log     *slog.Logger
}

// CA signs workload certificates. Signing reads the current authority
// without locking, so it scales with cores; Rotate swaps it atomically.
type CA struct {
	opts CAOptions
	log  *slog.Logger
	cur  atomic.Pointer[authority]
	// rotating serialises Rotate and RemoveOldRoots (they rewrite files).
	rotating sync.Mutex
	// Credentials are the per-pod tokens that authenticate certificate
	// requests.
	Credentials *Credentials
}

// authority is the signing key and everything derived from it, replaced
// as a whole on rotation.
type authority struct {
	signer *x509.Certificate
	key    crypto.Signer
	// chain is signer, its intermediates and the root, as Verify found it.
	chain []*x509.Certificate
	// chainPEM is chain in PEM, what follows the leaf in a response.
	chainPEM []string
	// roots is the trust bundle: the current root first, then any others
	// still trusted.
	roots     []*x509.Certificate
	bundlePEM []byte
	pool      *x509.CertPool
	// notAfter is when the first certificate of the chain expires: no
	// leaf may outlive it.
	notAfter time.Time
	gen      uint64
}

// NewCA loads or creates the CA the options describe.
func NewCA(opts CAOptions) (*CA, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = "cluster.local"
	}
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = DefaultTTL
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = max(DefaultMaxTTL, opts.DefaultTTL)
	}
	if opts.RootTTL <= 0 {
		opts.RootTTL = RootTTL
	}
	if opts.DefaultTTL > opts.MaxTTL {
		return nil, fmt.Errorf("CA: default certificate TTL %s is longer than the maximum %s: lower the TTL or raise the maximum", opts.DefaultTTL, opts.MaxTTL)
	}
	ca := &CA{opts: opts, log: opts.Log, Credentials: NewCredentials()}
	var a *authority
	var err error
	switch {
	case opts.PluginDir != "":
		a, err = loadPlugin(opts.PluginDir, opts.Log)
		if err == nil {
			opts.Log.Info("CA signing with the plug-in CA", "dir", opts.PluginDir, "subject", a.signer.Subject.String(), "expires", a.notAfter)
		}
	case opts.Dir != "":
		a, err = ca.loadOrCreateRoot()
	default:
		var root *x509.Certificate
		var key crypto.Signer
		root, key, err = newRoot(opts.TrustDomain, opts.RootTTL)
		if err == nil {
			a, err = selfSigned(root, key, nil)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := ca.publish(a); err != nil {
		return nil, err
	}
	ca.cur.Store(a)
	return ca, nil
}

// publish hands a bundle about to take effect to whoever must trust it
// first: the CA directory's root-cert.pem (what clients of a
// self-signed root read) and Options.Publish.
func (ca *CA) publish(a *authority) error {
	if ca.opts.Dir != "" && ca.opts.PluginDir == "" {
		if err := writeFile(filepath.Join(ca.opts.Dir, RootCertFile), a.bundlePEM); err != nil {
			return err
		}
	}
	if ca.opts.Publish != nil {
		if err := ca.opts.Publish(bytes.Clone(a.bundlePEM)); err != nil {
			return fmt.Errorf("CA: cannot publish the trust bundle: %w", err)
		}
	}
	return nil
}

// switchTo makes a the signing authority, once everyone has been told
// its bundle. The caller holds ca.rotating.
func (ca *CA) switchTo(cur, a *authority) error {
	if err := ca.publish(a); err != nil {
		return err
	}
	a.gen = cur.gen + 1
	ca.cur.Store(a)
	return nil
}

// loadOrCreateRoot reads the self-signed root from opts.Dir, making one on
// first start.
func (ca *CA) loadOrCreateRoot() (*authority, error) {
	dir := ca.opts.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA dir %s: %w", dir, err)
	}
	// MkdirAll leaves an existing directory's mode alone; the key must not
	// be listable by others either way.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA dir %s: %w", dir, err)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	if errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist) {
		root, key, err := newRoot(ca.opts.TrustDomain, ca.opts.RootTTL)
		if err != nil {
			return nil, err
		}
		if err := writeRoot(dir, root, key); err != nil {
			return nil, err
		}
		ca.log.Info("CA created a self-signed root", "dir", dir, "expires", root.NotAfter)
		return selfSigned(root, key, nil)
	}
	for _, p := range []string{certPath, keyPath, filepath.Join(dir, OldRootsFile)} {
		if err := tighten(p); err != nil {
			return nil, err
		}
	}
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	root := certs[0]
	if err := matches(root, key); err != nil {
		return nil, fmt.Errorf("%s and %s: %w (restore the pair, or remove both to make a new root; every workload then needs new certificates)", certPath, keyPath, err)
	}
	var old []*x509.Certificate
	if o, err := readCerts(filepath.Join(dir, OldRootsFile)); err == nil {
		now := time.Now()
		for _, c := range o {
			// An expired root can vouch for nothing; drop it.
			if now.Before(c.NotAfter) {
				old = append(old, c)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ca.log.Info("CA loaded its root", "dir", dir, "expires", root.NotAfter, "old roots trusted", len(old))
	return selfSigned(root, key, old)
}

// tighten makes an existing state file private (0600).
func tighten(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// newRoot makes a self-signed ECDSA P-256 root valid for ttl.
func newRoot(trustDomain string, ttl time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("CA: cannot make a root key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{trustDomain}, CommonName: "Trellis root CA"},
		// Backdated as leaves are, at most a tenth of its life, so the
		// rotator's share of that life left (RootDue) means what it says
		// for short-lived roots too.
		NotBefore:             now.Add(-min(maxBackdate, ttl/10)),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("CA: cannot make a root: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return c, key, nil
}

// writeRoot stores a root and its key, each replaced atomically.
func writeRoot(dir string, root *x509.Certificate, key crypto.Signer) error {
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, CACertFile), certPEM(root))
}

// writeFile replaces path with data, mode 0600, never leaving a partial
// file behind.
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("CA: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("CA: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("CA: writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("CA: writing %s: %w", path, err)
	}
	return nil
}

// selfSigned is the authority of a root that signs directly; old roots
// stay in its bundle.
func selfSigned(root *x509.Certificate, key crypto.Signer, old []*x509.Certificate) (*authority, error) {
	return newAuthority(root, key, []*x509.Certificate{root}, append([]*x509.Certificate{root}, old...))
}

func newAuthority(signer *x509.Certificate, key crypto.Signer, chain, roots []*x509.Certificate) (*authority, error) {
	a := &authority{signer: signer, key: key, chain: chain, roots: roots, pool: x509.NewCertPool()}
	for _, c := range chain {
		a.chainPEM = append(a.chainPEM, string(certPEM(c)))
		if a.notAfter.IsZero() || c.NotAfter.Before(a.notAfter) {
			a.notAfter = c.NotAfter
		}
	}
	var b bytes.Buffer
	for _, r := range roots {
		b.Write(certPEM(r))
		a.pool.AddCert(r)
	}
	a.bundlePEM = b.Bytes()
	return a, nil
}

// loadPlugin reads a user-supplied CA in Istio's plug-in layout and checks
// that it hangs together: the key is ca-cert's, and ca-cert chains
// (through cert-chain.pem) to a root in root-cert.pem.
func loadPlugin(dir string, log *slog.Logger) (*authority, error) {
	p := func(name string) string { return filepath.Join(dir, name) }
	signers, err := readCerts(p(CACertFile))
	if err != nil {
		return nil, err
	}
	signer := signers[0]
	key, err := readKey(p(CAKeyFile))
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(p(CAKeyFile)); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the plug-in CA's key is readable by other users: chmod 600 it", "file", p(CAKeyFile))
	}
	if err := matches(signer, key); err != nil {
		return nil, fmt.Errorf("%s and %s: %w", p(CACertFile), p(CAKeyFile), err)
	}
	if !signer.IsCA || signer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: is not a CA certificate (needs basicConstraints CA:TRUE and keyUsage keyCertSign)", p(CACertFile))
	}
	roots, err := readCerts(p(RootCertFile))
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	chainCerts, err := readCerts(p(CertChainFile))
	switch {
	case err == nil:
		for _, c := range chainCerts {
			inter.AddCert(c)
		}
	case errors.Is(err, os.ErrNotExist):
		// A CA signed by the root itself needs no chain file.
	default:
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	chains, err := signer.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("%s: does not chain to a root in %s through %s: %w", p(CACertFile), p(RootCertFile), p(CertChainFile), err)
	}
	chain := chains[0]
	// The root this CA chains to leads the bundle; the other roots in
	// root-cert.pem (a rotation in progress) follow.
	top := chain[len(chain)-1]
	bundle := []*x509.Certificate{top}
	for _, r := range roots {
		if !r.Equal(top) {
			bundle = append(bundle, r)
		}
	}
	return newAuthority(signer, key, chain, bundle)
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA: %s: certificate %d: %w", path, len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CA: %s: holds no PEM CERTIFICATE block", path)
	}
	return out, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("CA: %s: holds no PEM block", path)
	}
	var k any
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("CA: %s: PEM block %q is not a private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", path, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("CA: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA: %s: the key cannot sign", path)
	}
	return s, nil
}

// matches checks that key is the private half of cert's public key.
func matches(cert *x509.Certificate, key crypto.Signer) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("the key is not the certificate's")
	}
	return nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func serial() *big.Int {
	// 128 random bits, as RFC 5280 allows (at most 20 octets, positive).
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n.Add(n, big.NewInt(1))
}

// RootsPEM is the trust bundle in PEM: the current root first, then the
// roots still trusted during a rotation. Sidecars write it as
// root-cert.pem.
func (ca *CA) RootsPEM() []byte { return bytes.Clone(ca.cur.Load().bundlePEM) }

// Roots is the trust bundle as a pool.
func (ca *CA) Roots() *x509.CertPool { return ca.cur.Load().pool }

// Root is the root the CA's certificates chain to now.
func (ca *CA) Root() *x509.Certificate {
	c := ca.cur.Load().chain
	return c[len(c)-1]
}

// Generation changes whenever the signing authority does (Rotate), so a
// holder of a certificate it issued knows to ask again.
func (ca *CA) Generation() uint64 { return ca.cur.Load().gen }

// DefaultTTL and MaxTTL are the lifetimes the CA applies.
func (ca *CA) DefaultTTL() time.Duration { return ca.opts.DefaultTTL }

// MaxTTL is the longest lifetime a caller may get.
func (ca *CA) MaxTTL() time.Duration { return ca.opts.MaxTTL }

// Sign issues a workload certificate for id to the key in csrDER (a
// PKCS#10 request, DER). The CSR must be signed by its key; nothing else of
// it is used: the identity is id alone (one URI SAN). ttl <= 0 means the
// default; it is capped at MaxTTL and at the CA's own expiry. The result
// is the chain in PEM, leaf first and root last, as Istio's cert_chain.
func (ca *CA) Sign(csrDER []byte, id ID, ttl time.Duration) ([]string, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: its signature does not verify with its own key (was it signed by the key it carries?): %w", ErrInvalidCSR, err)
	}
	leaf, a, err := ca.issue(csr.PublicKey, leafSpec{uris: []*url.URL{id.URL()}, id: &id}, ttl)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, 1+len(a.chainPEM))
	out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf})))
	return append(out, a.chainPEM...), nil
}

// leafSpec is what a certificate names.
type leafSpec struct {
	id   *ID
	uris []*url.URL
	dns  []string
	ips  []net.IP
}

// issue signs a leaf for pub; it returns its DER and the authority that
// signed it.
func (ca *CA) issue(pub crypto.PublicKey, spec leafSpec, ttl time.Duration) ([]byte, *authority, error) {
	if spec.id != nil {
		if err := spec.id.Validate(); err != nil {
			return nil, nil, fmt.Errorf("identity: %w", err)
		}
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, nil, err
	}
	if ttl <= 0 {
		ttl = ca.opts.DefaultTTL
	}
	ttl = min(ttl, ca.opts.MaxTTL)
	a := ca.cur.Load()
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(a.notAfter) {
		notAfter = a.notAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("CA: its certificate %q expired at %s: rotate the root or replace the plug-in CA", a.signer.Subject, a.notAfter)
	}
	// A tenth of the lifetime at most, so a certificate of a few seconds
	// (tests of rotation) still reaches half its life soon after issue.
	backdate := min(maxBackdate, ttl/10)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         spec.uris,
		DNSNames:     spec.dns,
		IPAddresses:  spec.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.signer, pub, a.key)
	if err != nil {
		return nil, nil, fmt.Errorf("CA: cannot sign: %w", err)
	}
	return der, a, nil
}

// checkPublicKey refuses keys too weak to carry a mesh identity.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return fmt.Errorf("%w: ECDSA keys must be on P-256, P-384 or P-521", ErrInvalidCSR)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA keys must have at least 2048 bits, this one has %d", ErrInvalidCSR, k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("%w: unsupported key type %T: use ECDSA P-256", ErrInvalidCSR, pub)
	}
	return nil
}

// ServerCertificate issues a TLS server certificate with a new ECDSA P-256
// key for the names given, chained up to (not including) the root.
func (ca *CA) ServerCertificate(dns []string, ips []net.IP, uris []*url.URL, ttl time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	der, a, err := ca.issue(&key.PublicKey, leafSpec{dns: dns, ips: ips, uris: uris}, ttl)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	for _, c := range a.chain[:len(a.chain)-1] {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// Rotate replaces a self-signed root with a new one. The old root stays in
// the trust bundle (and in old-roots.pem) so that certificates it issued
// keep verifying until they are renewed; RemoveOldRoots drops it once they
// have been. A plug-in CA is rotated by replacing its files.
func (ca *CA) Rotate() error {
	if ca.opts.PluginDir != "" {
		return fmt.Errorf("CA: a plug-in CA (%s) is rotated by replacing its files, not by Rotate", ca.opts.PluginDir)
	}
	ca.rotating.Lock()
	defer ca.rotating.Unlock()
	cur := ca.cur.Load()
	root, key, err := newRoot(ca.opts.TrustDomain, ca.opts.RootTTL)
	if err != nil {
		return err
	}
	// An expired root vouches for nothing: it leaves the bundle here.
	now := time.Now()
	var old []*x509.Certificate
	for _, r := range append([]*x509.Certificate{cur.chain[0]}, cur.roots[1:]...) {
		if now.Before(r.NotAfter) {
			old = append(old, r)
		}
	}
	a, err := selfSigned(root, key, old)
	if err != nil {
		return err
	}
	// Published before it is on disk or signs: a failure here leaves
	// everything as it was, and a new root is trusted everywhere before
	// anyone holds a certificate from it.
	if err := ca.publish(a); err != nil {
		return err
	}
	if ca.opts.Dir != "" {
		// Old roots first: a crash before the new root is written leaves
		// the old one in place and merely listed twice.
		if err := writeFile(filepath.Join(ca.opts.Dir, OldRootsFile), pemAll(old)); err != nil {
			return err
		}
		if err := writeRoot(ca.opts.Dir, root, key); err != nil {
			return err
		}
	}
	a.gen = cur.gen + 1
	ca.cur.Store(a)
	ca.log.Info("CA rotated its root; the old one stays trusted until RemoveOldRoots", "expires", root.NotAfter, "old roots trusted", len(old))
	return nil
}

// RemoveOldRoots drops the roots Rotate kept: certificates they issued
// stop verifying.
func (ca *CA) RemoveOldRoots() error {
	if ca.opts.PluginDir != "" {
		return fmt.Errorf("CA: a plug-in CA's roots are the ones in %s", filepath.Join(ca.opts.PluginDir, RootCertFile))
	}
	ca.rotating.Lock()
	defer ca.rotating.Unlock()
	cur := ca.cur.Load()
	a, err := selfSigned(cur.chain[0], cur.key, nil)
	if err != nil {
		return err
	}
	if err := ca.switchTo(cur, a); err != nil {
		return err
	}
	if ca.opts.Dir != "" {
		if err := os.Remove(filepath.Join(ca.opts.Dir, OldRootsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("CA: %w (the old roots are no longer trusted now, but would be again after a restart)", err)
		}
	}
	return nil
}

func pemAll(cs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		b.Write(certPEM(c))
	}
	return b.Bytes()
}

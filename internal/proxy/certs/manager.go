package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
)

// DefaultTTL is the certificate lifetime a Manager asks for by default,
// as Istio's SECRET_TTL.
const DefaultTTL = 24 * time.Hour

// Rotation: at half the certificate's life, up to 1% of it earlier (never
// later), as Istio's agent does, so a fleet issued at once does not renew
// at once.
const (
	rotateAt     = 0.5
	rotateJitter = 0.01
)

// ManagerOptions configure NewManager.
type ManagerOptions struct {
	// CA is the CA's address: host:port or unix:///path.
	CA string
	// RootCertFile holds the mesh's root certificate(s), PEM: the CA's
	// server certificate and every issued chain are verified against
	// them. It is looked at again at each handshake and renewal, so
	// roots published there for a root rotation are trusted at once.
	RootCertFile string
	// CredentialFile holds the token the CA authenticates the first
	// request with ("authorization: Bearer <token>"); read at each
	// request. Renewals also present the current certificate.
	CredentialFile string
	// Credential is the token itself, handed over in memory (as trellis
	// up does through an inherited pipe, see ReadCredentialFD) instead of
	// CredentialFile. It is taken as single-use: presented until the
	// first certificate is issued and then forgotten, renewals
	// authenticating with the certificate alone. When the CA refuses it
	// before a certificate is in hand, or the certificate has expired and
	// renewing fails, Run returns ErrCredentialSpent: nothing the proxy
	// holds can get a certificate any more, and its supervisor should
	// start it again with a new credential.
	Credential string
	// TTL is the lifetime asked for (default DefaultTTL); the CA may
	// issue a shorter one, and rotation follows what it issued.
	TTL time.Duration
	// SPIFFEID is the identity the proxy expects, put in the CSR as a
	// hint only: the CA decides from the credential.
	SPIFFEID string
	// RetryInitial and RetryMax pace retries after a failure: each wait
	// is random in [d/2, d], d doubling from RetryInitial (default
	// 500ms) up to RetryMax (default 30s).
	RetryInitial, RetryMax time.Duration
	// CallTimeout bounds one call to the CA (default 30s).
	CallTimeout time.Duration
	Log         *slog.Logger
}

// Manager is a Source whose certificate the mesh CA issues and which
// renews it before it expires. Its private keys are made in memory and
// never leave it: not to disk, logs or Snapshot.
type Manager struct {
	opts   ManagerOptions
	target grpcwire.Target
	log    *slog.Logger

	cur       atomic.Pointer[issued]
	fileRoots atomic.Pointer[rootSet]
	trust     trustState // see bundle.go

	mu sync.Mutex
	// cred is the in-memory credential until the first certificate;
	// oneShot says the proxy was given one (ManagerOptions.Credential).
	cred      string
	oneShot   bool
	updated   chan struct{} // closed and replaced at each new certificate
	lastErr   error
	ready     chan struct{}
	readyOnce sync.Once
}

// issued is one certificate the CA issued. The root it sent (the last of
// chain) joins the trust bundle through trustBundle.
type issued struct {
	cert     *tls.Certificate
	id       string
	chain    []*x509.Certificate // as the CA sent it, leaf first
	rotateAt time.Time
}

type rootSet struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

func newRootSet(certs []*x509.Certificate) *rootSet {
	rs := &rootSet{pool: x509.NewCertPool()}
	for _, c := range certs {
		if !rs.has(c) {
			rs.pool.AddCert(c)
			rs.certs = append(rs.certs, c)
		}
	}
	return rs
}

func (rs *rootSet) has(c *x509.Certificate) bool {
	for _, r := range rs.certs {
		if r.Equal(c) {
			return true
		}
	}
	return false
}

// NewManager checks opts and reads the root file; call Run to get and
// renew the certificate.
func NewManager(opts ManagerOptions) (*Manager, error) {
	t, err := grpcwire.ParseTarget(opts.CA)
	if err != nil {
		return nil, fmt.Errorf("CA address %w", err)
	}
	if opts.Credential != "" && opts.CredentialFile != "" {
		return nil, errors.New("certs: give the credential one way: a credential file or an in-memory credential, not both")
	}
	if opts.RootCertFile == "" {
		return nil, errors.New("certs: a root certificate file is needed to verify the CA (--root-cert / XDS_ROOT_CA)")
	}
	if opts.SPIFFEID != "" {
		if _, err := ParseSPIFFEID(opts.SPIFFEID); err != nil {
			return nil, err
		}
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < time.Second {
		return nil, fmt.Errorf("certs: certificate TTL %s: must be at least 1s", opts.TTL)
	}
	if opts.RetryInitial <= 0 {
		opts.RetryInitial = 500 * time.Millisecond
	}
	if opts.RetryMax < opts.RetryInitial {
		opts.RetryMax = max(30*time.Second, opts.RetryInitial)
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	m := &Manager{opts: opts, target: t, log: opts.Log, updated: make(chan struct{}), ready: make(chan struct{})}
	m.cred, m.oneShot = strings.TrimSpace(opts.Credential), opts.Credential != ""
	m.opts.Credential = "" // kept in m.cred only, and only until used
	roots, err := readRoots(opts.RootCertFile)
	if err != nil {
		return nil, err
	}
	m.fileRoots.Store(roots)
	return m, nil
}

// Certificate implements Source.
func (m *Manager) Certificate() (*tls.Certificate, error) {
	if cur := m.cur.Load(); cur != nil {
		return cur.cert, nil
	}
	return nil, ErrNoCertificate
}

// Roots implements Source: the root file's roots, as the file is now,
// and the root the CA sent with the current certificate.
func (m *Manager) Roots() *x509.CertPool { return m.trustBundle().pool }

// Ready is closed once the first certificate is issued.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Updated is closed when a certificate newer than the current one is
// issued; call it again for the next.
func (m *Manager) Updated() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.updated
}

// Err is why the last attempt to get a certificate failed, or nil when
// it succeeded (or none was made yet).
func (m *Manager) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastErr
}

// ErrCredentialSpent is what Run returns when a proxy given a single-use
// credential (ManagerOptions.Credential) can no longer get a certificate.
var ErrCredentialSpent = errors.New("no usable credential left")

// Run gets the first certificate and renews it at half its life until ctx
// ends, retrying failures with capped exponential backoff. The current
// certificate is kept until a new one is in hand, even past its expiry
// (with an error logged): nothing would be gained by dropping it. It
// returns nil when ctx ends, or an error wrapping ErrCredentialSpent (see
// ManagerOptions.Credential).
func (m *Manager) Run(ctx context.Context) error {
	delay := m.opts.RetryInitial
	for {
		if cur := m.cur.Load(); cur != nil {
			if !sleep(ctx, time.Until(cur.rotateAt)) {
				return nil
			}
		}
		err := m.Issue(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			delay = m.opts.RetryInitial
			continue
		}
		if err := m.spent(err); err != nil {
			return err
		}
		wait := delay/2 + mrand.N(delay/2+1)
		delay = min(2*delay, m.opts.RetryMax)
		switch cur := m.cur.Load(); {
		case cur == nil:
			m.log.Warn("no workload certificate yet; retrying", "ca", m.opts.CA, "err", err, "retry_in", wait)
		case time.Now().After(cur.cert.Leaf.NotAfter):
			m.log.Error("the workload certificate has EXPIRED and renewing it fails: peers will refuse this proxy's mTLS connections", "spiffe_id", cur.id, "expired", cur.cert.Leaf.NotAfter, "ca", m.opts.CA, "err", err, "retry_in", wait)
		default:
			m.log.Warn("renewing the workload certificate failed; keeping the current one", "spiffe_id", cur.id, "expires", cur.cert.Leaf.NotAfter, "ca", m.opts.CA, "err", err, "retry_in", wait)
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// spent says whether err, a failed attempt, leaves a proxy with a
// single-use credential nothing to get a certificate with: the CA refused
// the credential (already spent, e.g. on an answer lost on its way, or
// revoked), or the certificate renewals authenticate with has expired.
// Retrying could not help; a restart with a new credential does.
func (m *Manager) spent(err error) error {
	if !m.oneShot {
		return nil
	}
	switch cur := m.cur.Load(); {
	case cur == nil && errors.Is(err, errRefused):
		return fmt.Errorf("certs: %w: the CA refused the single-use credential this proxy was started with (%w); exiting, so that it is started again with a new one", ErrCredentialSpent, err)
	case cur != nil && time.Now().After(cur.cert.Leaf.NotAfter):
		return fmt.Errorf("certs: %w: the workload certificate %s expired at %s and renewing it failed (%w); exiting, so that it is started again with a new credential", ErrCredentialSpent, cur.id, cur.cert.Leaf.NotAfter.UTC().Format(time.RFC3339), err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Issue asks the CA for a certificate for a new key once and, if the
// answer checks out, makes it the current one. Run calls it; it is
// exported for tests and tools.
func (m *Manager) Issue(ctx context.Context) error {
	err := m.issue(ctx)
	m.mu.Lock()
	m.lastErr = err
	m.mu.Unlock()
	return err
}

func (m *Manager) issue(ctx context.Context) error {
	roots, err := readRoots(m.opts.RootCertFile)
	if err != nil {
		// A root file being rewritten must not stop renewals: the roots
		// read before still hold.
		m.log.Warn("cannot read the root certificate file; keeping the roots read before", "err", err)
		roots = m.fileRoots.Load()
	} else {
		m.fileRoots.Store(roots)
	}
	cur := m.cur.Load()
	token, err := m.token()
	if err != nil && cur == nil {
		return err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: making a key: %w", err)
	}
	tmpl := &x509.CertificateRequest{}
	if m.opts.SPIFFEID != "" {
		u, _ := url.Parse(m.opts.SPIFFEID) // checked by NewManager
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return fmt.Errorf("certs: making the CSR: %w", err)
	}
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))

	// A connection per call: calls are hours apart, and each handshake
	// then presents the certificate current at that moment.
	conn := grpcwire.NewConn(m.target, ControlPlaneConfig(m), grpcwire.Keepalive{})
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, m.opts.CallTimeout)
	defer cancel()
	chainPEM, err := createCertificate(cctx, conn, token, csrPEM, int64(m.opts.TTL/time.Second))
	if err != nil {
		return err
	}
	next, err := accept(key, chainPEM, roots, time.Now())
	if err != nil {
		return fmt.Errorf("the CA at %s issued a certificate this proxy cannot use: %w", m.opts.CA, err)
	}
	// Logged before it is published, so whoever waits on Updated or
	// Ready finds the line.
	leaf := next.cert.Leaf
	attrs := []any{"spiffe_id", next.id, "serial", serialHex(leaf), "not_after", leaf.NotAfter, "rotate_at", next.rotateAt}
	if m.opts.SPIFFEID != "" && m.opts.SPIFFEID != next.id {
		attrs = append(attrs, "asked_for", m.opts.SPIFFEID)
	}
	if cur == nil {
		m.log.Info("workload certificate issued", attrs...)
	} else {
		m.log.Info("workload certificate renewed", attrs...)
	}

	m.cur.Store(next)
	m.mu.Lock()
	m.cred = "" // spent: renewals present the certificate
	close(m.updated)
	m.updated = make(chan struct{})
	m.mu.Unlock()
	m.readyOnce.Do(func() { close(m.ready) })
	return nil
}

func (m *Manager) token() (string, error) {
	if m.oneShot {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.cred == "" {
			return "", errors.New("certs: the single-use credential is spent; renewing with the current certificate")
		}
		return m.cred, nil
	}
	if m.opts.CredentialFile == "" {
		return "", errors.New("certs: no credential to ask the CA with: set --credential-fd / TRELLIS_CREDENTIAL_FD or --credential-file / TRELLIS_CREDENTIAL_FILE")
	}
	b, err := os.ReadFile(m.opts.CredentialFile)
	if err != nil {
		return "", fmt.Errorf("certs: reading the credential: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("certs: the credential file %s is empty", m.opts.CredentialFile)
	}
	return tok, nil
}

// accept checks what the CA sent for key and returns it as the new
// identity: the leaf's public key is key's, the chain verifies to roots,
// and the leaf is an SVID (exactly one URI SAN, a SPIFFE ID).
func accept(key *ecdsa.PrivateKey, chainPEM []string, roots *rootSet, now time.Time) (*issued, error) {
	var chain []*x509.Certificate
	for i, s := range chainPEM {
		rest := []byte(s)
		n := 0
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("cert_chain[%d]: a %q PEM block, want CERTIFICATE", i, block.Type)
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("cert_chain[%d]: %w", i, err)
			}
			chain = append(chain, c)
			n++
		}
		if n == 0 || len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("cert_chain[%d]: not a PEM certificate", i)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("cert_chain is empty")
	}
	leaf := chain[0]
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("the leaf certificate's public key is not the one this proxy's CSR carried")
	}
	if len(leaf.URIs) != 1 || SPIFFEID(leaf) == "" {
		return nil, fmt.Errorf("the leaf certificate must have exactly one URI SAN, a SPIFFE ID; it has %d URI SANs %v", len(leaf.URIs), leaf.URIs)
	}
	id := SPIFFEID(leaf)
	if _, err := ParseSPIFFEID(id); err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("the chain does not verify against the root certificate file: %w", err)
	}
	// The chain presented in handshakes stops below the root, which
	// peers have (trustBundle adds it to the bundle).
	present := chain
	if last := chain[len(chain)-1]; len(chain) > 1 && isSelfSigned(last) {
		present = chain[:len(chain)-1]
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range present {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &issued{
		cert:     cert,
		id:       id,
		chain:    chain,
		rotateAt: rotationTime(leaf.NotBefore, leaf.NotAfter, mrand.Float64()),
	}, nil
}

// rotationTime is when a certificate valid from notBefore to notAfter is
// renewed: at half its life, earlier by u (in [0, 1)) times 1% of it.
func rotationTime(notBefore, notAfter time.Time, u float64) time.Time {
	life := notAfter.Sub(notBefore)
	return notBefore.Add(time.Duration(float64(life) * (rotateAt - rotateJitter*u)))
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// readRoots reads every certificate of a PEM file.
func readRoots(path string) (*rootSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: reading the root certificate: %w", err)
	}
	return decodeRoots(b, path)
}

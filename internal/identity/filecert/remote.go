package filecert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellismesh/trellis/internal/identity"
)

// RemoteCA is an Issuer for files written outside the control plane's
// process: it asks the mesh CA's service (Istio's CreateCertificate on the
// secure port) with a per-pod credential, as a sidecar does. The
// credential decides the identity; Sign checks that the certificate names
// the one the Writer was given.
type RemoteCA struct {
	conn     *grpc.ClientConn
	client   securityv1alpha1.IstioCertificateServiceClient
	rootFile string
	credFile string
	timeout  time.Duration

	mu    sync.Mutex
	roots []byte // the last good root-cert.pem
}

// DialCA connects to the CA at addr (host:port, or unix:PATH) over TLS,
// verifying it against the trust bundle in rootFile (read again at each
// handshake, so a root rotation that rewrites it is followed), and
// authenticating each request with the token in credentialFile (read
// again at each request).
func DialCA(addr, rootFile, credentialFile string) (*RemoteCA, error) {
	r := &RemoteCA{rootFile: rootFile, credFile: credentialFile, timeout: 10 * time.Second}
	if _, err := r.pool(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is checked in VerifyConnection against the root file
		// of the moment; the name by Go's usual rules there too.
		InsecureSkipVerify: true,
		VerifyConnection:   r.verify,
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, fmt.Errorf("filecert: cannot reach the CA at %s: %w", addr, err)
	}
	r.conn, r.client = conn, securityv1alpha1.NewIstioCertificateServiceClient(conn)
	return r, nil
}

// Close ends the connection.
func (r *RemoteCA) Close() error { return r.conn.Close() }

func (r *RemoteCA) pool() (*x509.CertPool, error) {
	b, err := os.ReadFile(r.rootFile)
	if err != nil {
		return nil, fmt.Errorf("filecert: cannot read the mesh trust bundle: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("filecert: %s holds no PEM certificate: give the mesh's root-cert.pem", r.rootFile)
	}
	r.mu.Lock()
	r.roots = b
	r.mu.Unlock()
	return p, nil
}

func (r *RemoteCA) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the CA presented no certificate")
	}
	roots, err := r.pool()
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: roots, Intermediates: inter})
	return err
}

// RootsPEM is the trust bundle file's content (the last readable one).
func (r *RemoteCA) RootsPEM() []byte {
	// An unreadable file leaves the last good bundle in place, so the
	// writer never replaces root-cert.pem with nothing.
	_, _ = r.pool()
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.roots)
}

// Sign asks the CA for a certificate for the key in csrDER. ttl is
// rounded down to whole seconds (the service's unit; under a second asks
// for the CA's default).
func (r *RemoteCA) Sign(csrDER []byte, id identity.ID, ttl time.Duration) ([]string, error) {
	tok, err := os.ReadFile(r.credFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the credential: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := r.client.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr:              string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		ValidityDuration: int64(ttl / time.Second),
	})
	if err != nil {
		return nil, err
	}
	chain := resp.GetCertChain()
	if len(chain) == 0 {
		return nil, errors.New("the CA answered without a certificate")
	}
	b, _ := pem.Decode([]byte(chain[0]))
	if b == nil {
		return nil, errors.New("the CA answered with a certificate that is not PEM")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the CA answered with an unreadable certificate: %w", err)
	}
	if got, err := identity.FromCertificate(leaf); err != nil || got != id {
		return nil, fmt.Errorf("the credential in %s is for %v, not %s: give this workload its own credential", r.credFile, describe(got, err), id)
	}
	return chain, nil
}

func describe(id identity.ID, err error) string {
	if err != nil {
		return "no SPIFFE identity (" + err.Error() + ")"
	}
	return id.String()
}

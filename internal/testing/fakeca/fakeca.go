// Package fakeca is a real gRPC IstioCertificateService for tests of the
// proxy's certificate client: grpc-go and Istio's generated server stub
// (which the proxy itself must not link), over TLS on a Unix socket,
// signing with a certtest CA. It authenticates callers as the control
// plane's CA does: by a bearer token naming one identity, or by a valid
// mesh client certificate (renewal of the same identity).
package fakeca

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	securityv1 "istio.io/api/security/v1alpha1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/trellismesh/trellis/internal/testing/certtest"
)

// Request is one call the server answered (or refused).
type Request struct {
	Token           string // the bearer token sent, "" for none
	ClientCertID    string // the SPIFFE ID of a verified client certificate
	CSRURIs         []string
	ValiditySeconds int64
	Issued          *x509.Certificate // nil when refused
}

// Server is a running fake CA.
type Server struct {
	CA *certtest.CA
	// Addr is "unix:///path" for the proxy's CA client.
	Addr string
	// RootFile is a PEM file holding the CA's root.
	RootFile string

	mu     sync.Mutex
	tokens map[string]string
	reqs   []Request
	tamper func(chain []string, csr *x509.CertificateRequest) []string
	issued chan *x509.Certificate
}

// Start serves a CA signing with ca (certtest.NewCA(t) when nil) until
// the test ends.
func Start(t testing.TB, ca *certtest.CA) *Server {
	t.Helper()
	if ca == nil {
		ca = certtest.NewCA(t)
	}
	dir := t.TempDir()
	s := &Server{CA: ca, tokens: map[string]string{}, issued: make(chan *x509.Certificate, 100)}
	s.RootFile = filepath.Join(dir, "root-cert.pem")
	if err := os.WriteFile(s.RootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ca.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = "unix://" + sock
	serverCert := ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"localhost"}})
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{*serverCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS13,
	})
	gs := grpc.NewServer(grpc.Creds(creds))
	securityv1.RegisterIstioCertificateServiceServer(gs, &service{s: s})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return s
}

// Allow makes token authenticate as SPIFFE ID id.
func (s *Server) Allow(token, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = id
}

// Revoke makes token authenticate no one.
func (s *Server) Revoke(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// Tamper rewrites every answer's chain (nil: stop).
func (s *Server) Tamper(f func(chain []string, csr *x509.CertificateRequest) []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tamper = f
}

// Requests are the calls so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Issued receives every certificate issued.
func (s *Server) Issued() <-chan *x509.Certificate { return s.issued }

// Sign issues a leaf for pub with SPIFFE ID id (and the extra URIs),
// valid from now for ttl, by ca; it returns its PEM.
func Sign(t testing.TB, ca *certtest.CA, pub any, ttl time.Duration, uris ...string) string {
	der, err := sign(ca, pub, ttl, uris)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func sign(ca *certtest.CA, pub any, ttl time.Duration, uris []string) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now,
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
}

// ChainAbove is the PEM of ca's certificates above a leaf it signs, root
// last, as a CA's answer carries them.
func ChainAbove(ca *certtest.CA) []string {
	var out []string
	enc := func(c *x509.Certificate) {
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	enc(ca.Cert)
	for _, c := range ca.Chain {
		enc(c)
	}
	return out
}

type service struct {
	securityv1.UnimplementedIstioCertificateServiceServer
	s *Server
}

func (v *service) CreateCertificate(ctx context.Context, req *securityv1.IstioCertificateRequest) (*securityv1.IstioCertificateResponse, error) {
	s := v.s
	var r Request
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if a := md.Get("authorization"); len(a) == 1 {
			r.Token, _ = strings.CutPrefix(a[0], "Bearer ")
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			for _, u := range ti.State.VerifiedChains[0][0].URIs {
				if u.Scheme == "spiffe" {
					r.ClientCertID = u.String()
				}
			}
		}
	}
	r.ValiditySeconds = req.GetValidityDuration()
	block, _ := pem.Decode([]byte(req.GetCsr()))
	var csr *x509.CertificateRequest
	var err error
	if block != nil {
		csr, err = x509.ParseCertificateRequest(block.Bytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.tokens[r.Token]
	if id == "" {
		// A client certificate renews its own identity only.
		id = r.ClientCertID
	}
	if csr != nil {
		for _, u := range csr.URIs {
			r.CSRURIs = append(r.CSRURIs, u.String())
		}
	}
	s.reqs = append(s.reqs, r)
	switch {
	case id == "":
		return nil, status.Error(codes.Unauthenticated, "the credential is not valid")
	case csr == nil || err != nil:
		return nil, status.Errorf(codes.InvalidArgument, "csr: not a PEM certificate request: %v", err)
	case csr.CheckSignature() != nil:
		return nil, status.Error(codes.InvalidArgument, "csr: bad signature")
	}
	ttl := time.Duration(req.GetValidityDuration()) * time.Second
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	der, err := sign(s.CA, csr.PublicKey, ttl, []string{id})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	leaf, _ := x509.ParseCertificate(der)
	s.reqs[len(s.reqs)-1].Issued = leaf
	chain := append([]string{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}, ChainAbove(s.CA)...)
	if s.tamper != nil {
		chain = s.tamper(chain, csr)
	}
	select {
	case s.issued <- leaf:
	default:
	}
	return &securityv1.IstioCertificateResponse{CertChain: chain}, nil
}

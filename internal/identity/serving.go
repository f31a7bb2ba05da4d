package identity

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// ServingCert is a server certificate the CA issued for itself, renewed at
// the first handshake past half its life or after the CA rotated.
type ServingCert struct {
	CA   *CA
	DNS  []string
	IPs  []net.IP
	URIs []*url.URL
	// TTL is the certificate's lifetime (default: the CA's default).
	TTL time.Duration

	mu      sync.Mutex
	cur     *tls.Certificate
	gen     uint64
	renewAt time.Time
}

// Certificate returns the current certificate, issuing a new one when
// due. A failed renewal keeps serving the old certificate while it is
// valid.
func (s *ServingCert) Certificate() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.cur != nil && now.Before(s.renewAt) && s.gen == s.CA.Generation() {
		return s.cur, nil
	}
	gen := s.CA.Generation()
	c, err := s.CA.ServerCertificate(s.DNS, s.IPs, s.URIs, s.TTL)
	if err != nil {
		if s.cur != nil && now.Before(s.cur.Leaf.NotAfter) {
			s.CA.log.Error("cannot renew the control plane's serving certificate; the current one stays until it expires", "expires", s.cur.Leaf.NotAfter, "err", err)
			return s.cur, nil
		}
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	s.cur, s.gen = c, gen
	s.renewAt = c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) / 2)
	return c, nil
}

// ServerTLSConfig is the control plane's secure port: TLS 1.3, the serving
// certificate, and a client certificate asked for but optional (a proxy
// asking for its first certificate has none), verified against the CA's
// roots of the moment when given.
func (ca *CA) ServerTLSConfig(sc *ServingCert) *tls.Config {
	base := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return sc.Certificate()
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		// gRPC is HTTP/2; a config handed back by GetConfigForClient must
		// say so itself.
		NextProtos: []string{"h2"},
	}
	cfg := base.Clone()
	// Per connection, so a rotated bundle applies to the next handshake.
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = ca.Roots()
		return c, nil
	}
	return cfg
}

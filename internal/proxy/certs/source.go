package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
)

// A Source is the proxy's current identity. Implementations swap both
// values atomically on rotation; callers never cache them across
// handshakes.
type Source interface {
	// Certificate is the current leaf (first) with its chain and private
	// key; an error while none has been issued yet.
	Certificate() (*tls.Certificate, error)
	// Roots is the trust bundle: every root a peer's chain may end in
	// (during a root rotation, the old and the new one).
	Roots() *x509.CertPool
}

// Identity is a certificate with its parsed leaf and SPIFFE ID, as a
// Static source or a rotating one holds it.
type Identity struct {
	Cert  *tls.Certificate
	Roots *x509.CertPool
}

// Static is a Source that holds one identity until Set replaces it. The
// zero value has none.
type Static struct {
	cur atomic.Pointer[Identity]
}

// NewStatic returns a Static holding cert and roots.
func NewStatic(cert *tls.Certificate, roots *x509.CertPool) *Static {
	s := &Static{}
	s.Set(cert, roots)
	return s
}

// Set replaces the identity; handshakes after it use the new one.
func (s *Static) Set(cert *tls.Certificate, roots *x509.CertPool) {
	s.cur.Store(&Identity{Cert: cert, Roots: roots})
}

// ErrNoCertificate is returned before the first certificate is issued.
var ErrNoCertificate = errors.New("certs: no workload certificate issued yet (is the control plane's CA reachable?)")

// Certificate implements Source.
func (s *Static) Certificate() (*tls.Certificate, error) {
	if id := s.cur.Load(); id != nil && id.Cert != nil {
		return id.Cert, nil
	}
	return nil, ErrNoCertificate
}

// Roots implements Source.
func (s *Static) Roots() *x509.CertPool {
	if id := s.cur.Load(); id != nil {
		return id.Roots
	}
	return nil
}

// SPIFFEID is the SPIFFE ID (spiffe://trust-domain/path) of a certificate:
// its one URI SAN with the spiffe scheme, or "" when it has none or more
// than one (an SVID has exactly one).
func SPIFFEID(c *x509.Certificate) string {
	id := ""
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if id != "" {
			return ""
		}
		id = u.String()
	}
	return id
}

// Principal is a SPIFFE ID as AuthorizationPolicy principals write it:
// without the spiffe:// scheme ("cluster.local/ns/default/sa/sleep").
func Principal(spiffeID string) string {
	return strings.TrimPrefix(spiffeID, "spiffe://")
}

// ParseSPIFFEID checks that s is a SPIFFE ID (spiffe://trust-domain/path,
// no query, fragment, port or user info) and returns it as a URL.
func ParseSPIFFEID(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	switch {
	case u.Scheme != "spiffe":
		return nil, fmt.Errorf("SPIFFE ID %q: the scheme must be spiffe", s)
	case u.Host == "" || u.Port() != "" || u.User != nil:
		return nil, fmt.Errorf("SPIFFE ID %q: needs a trust domain and nothing else before the path", s)
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return nil, fmt.Errorf("SPIFFE ID %q: no query or fragment allowed", s)
	}
	return u, nil
}

// Package certtest makes real certificate authorities and SPIFFE
// certificates for tests: a root (optionally an intermediate under it) and
// leaves for any SPIFFE ID, validity window and key, so tests can exercise
// expired, not-yet-valid, wrong-CA and wrong-identity peers.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// Chain is the CA's own chain above its leaves' issuer, root last
	// (empty for a root CA; the root for an intermediate).
	Chain []*x509.Certificate
	// Root is the self-signed root this CA chains to.
	Root *x509.Certificate
}

// NewCA returns a self-signed root CA valid from an hour ago for a year.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"certtest"}, CommonName: "certtest root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: key, Root: c}
}

// Intermediate returns a CA signed by ca.
func (ca *CA) Intermediate(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"certtest"}, CommonName: "certtest intermediate"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(180 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: key, Chain: append([]*x509.Certificate{ca.Cert}, ca.Chain...), Root: ca.Root}
}

// Pool is a pool holding the CA's root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// LeafOptions change what Leaf issues.
type LeafOptions struct {
	NotBefore, NotAfter time.Time // zero: an hour ago, a day from now
	URIs                []string  // extra URI SANs
	DNSNames            []string
}

// Leaf issues a certificate for the SPIFFE ID id ("" for none) with a new
// ECDSA P-256 key, chained up to (but not including) the root, as a
// workload presents it.
func (ca *CA) Leaf(t testing.TB, id string, o LeafOptions) *tls.Certificate {
	t.Helper()
	key := newKey(t)
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     o.DNSNames,
	}
	for _, s := range append([]string{id}, o.URIs...) {
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	if ca.Cert != ca.Root {
		cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
		for _, c := range ca.Chain {
			if c != ca.Root {
				cert.Certificate = append(cert.Certificate, c.Raw)
			}
		}
	}
	return cert
}

// SPIFFE is Istio's SPIFFE ID for a namespace and service account in the
// cluster.local trust domain.
func SPIFFE(ns, sa string) string {
	return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

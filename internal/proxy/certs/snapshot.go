package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// Snapshot is a Source's current certificate as the admin /certs page
// shows it: public parts only, never the key.
type Snapshot struct {
	SPIFFEID     string    `json:"spiffe_id"`
	SerialNumber string    `json:"serial_number"`
	NotBefore    time.Time `json:"valid_from"`
	NotAfter     time.Time `json:"expiration_time"`
	// NextRotation is when a Manager renews it.
	NextRotation time.Time  `json:"next_rotation,omitzero"`
	CertChain    []CertInfo `json:"cert_chain"`
	// CACert are the trust bundle's roots, when the Source can list them.
	CACert       []CertInfo `json:"ca_cert,omitempty"`
	CertChainPEM string     `json:"cert_chain_pem"`
	// LastError is why the last renewal failed, while it does.
	LastError string `json:"last_error,omitempty"`
}

// CertInfo describes one certificate, as Envoy's /certs does.
type CertInfo struct {
	SerialNumber        string    `json:"serial_number"`
	Subject             string    `json:"subject,omitempty"`
	SubjectAltNames     []string  `json:"subject_alt_names,omitempty"`
	ValidFrom           time.Time `json:"valid_from"`
	ExpirationTime      time.Time `json:"expiration_time"`
	DaysUntilExpiration int       `json:"days_until_expiration"`
}

// Describe is src's current certificate as a Snapshot (a Manager's own
// Snapshot when src is one), or ErrNoCertificate.
func Describe(src Source) (Snapshot, error) {
	if s, ok := src.(interface{ Snapshot() (Snapshot, error) }); ok {
		return s.Snapshot()
	}
	c, err := src.Certificate()
	if err != nil {
		return Snapshot{}, err
	}
	var chain []*x509.Certificate
	for i, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return Snapshot{}, fmt.Errorf("certs: certificate %d of the chain: %w", i, err)
		}
		chain = append(chain, x)
	}
	return describe(chain, nil, time.Now()), nil
}

// Snapshot is the current certificate for the admin page.
func (m *Manager) Snapshot() (Snapshot, error) {
	cur := m.cur.Load()
	var last string
	if err := m.Err(); err != nil {
		last = err.Error()
	}
	if cur == nil {
		return Snapshot{LastError: last}, ErrNoCertificate
	}
	s := describe(cur.chain, m.bundleCerts(), time.Now())
	s.NextRotation = cur.rotateAt
	s.LastError = last
	return s, nil
}

func describe(chain, roots []*x509.Certificate, now time.Time) Snapshot {
	if len(chain) == 0 {
		return Snapshot{}
	}
	leaf := chain[0]
	s := Snapshot{
		SPIFFEID:     SPIFFEID(leaf),
		SerialNumber: serialHex(leaf),
		NotBefore:    leaf.NotBefore,
		NotAfter:     leaf.NotAfter,
	}
	var b strings.Builder
	for _, c := range chain {
		s.CertChain = append(s.CertChain, info(c, now))
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	s.CertChainPEM = b.String()
	for _, c := range roots {
		s.CACert = append(s.CACert, info(c, now))
	}
	return s
}

func info(c *x509.Certificate, now time.Time) CertInfo {
	ci := CertInfo{
		SerialNumber:        serialHex(c),
		Subject:             c.Subject.String(),
		ValidFrom:           c.NotBefore,
		ExpirationTime:      c.NotAfter,
		DaysUntilExpiration: int(c.NotAfter.Sub(now) / (24 * time.Hour)),
	}
	for _, u := range c.URIs {
		ci.SubjectAltNames = append(ci.SubjectAltNames, "uri:"+u.String())
	}
	for _, d := range c.DNSNames {
		ci.SubjectAltNames = append(ci.SubjectAltNames, "dns:"+d)
	}
	for _, ip := range c.IPAddresses {
		ci.SubjectAltNames = append(ci.SubjectAltNames, "ip:"+ip.String())
	}
	return ci
}

func serialHex(c *x509.Certificate) string {
	return c.SerialNumber.Text(16)
}

package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// CurvePreferences are the key exchanges mesh TLS offers, in order: the
// hybrid post-quantum X25519MLKEM768 first, X25519 for peers without it
// (as Linkerd 2.19 does). Go's TLS 1.3 uses AES-GCM when both ends have
// AES hardware, which every machine the mesh targets has.
var CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}

// VerifyPeer checks a peer's chain against src's current roots and, when
// allow is not nil, that its SPIFFE ID is one allow accepts. It returns
// the peer's SPIFFE ID. Certificates are verified here rather than by
// crypto/tls so that the roots are read at each handshake (a rotated
// bundle applies at once) and SVIDs, which carry no DNS names, need no
// server-name check.
func VerifyPeer(src Source, rawCerts [][]byte, allow func(spiffeID string) bool) (string, error) {
	if len(rawCerts) == 0 {
		return "", errors.New("certs: the peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return "", fmt.Errorf("certs: the peer's certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	roots := src.Roots()
	if roots == nil {
		return "", ErrNoCertificate
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return "", fmt.Errorf("certs: the peer's certificate: %w", err)
	}
	id := SPIFFEID(certs[0])
	if id == "" {
		return "", errors.New("certs: the peer's certificate has no SPIFFE ID (exactly one spiffe:// URI SAN)")
	}
	if allow != nil && !allow(id) {
		return "", fmt.Errorf("certs: the peer is %s, which this destination is not expected to be", id)
	}
	return id, nil
}

// ServerConfig is the TLS config of a mesh listener (the tunnel port, an
// mTLS inbound port): TLS 1.3 only, the current certificate, and a client
// certificate required and verified against the current roots; allow, when
// not nil, decides which SPIFFE IDs may connect.
func ServerConfig(src Source, allow func(spiffeID string) bool) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: CurvePreferences,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
		// RequireAnyClientCert, then VerifyPeerCertificate against the
		// roots of the moment.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := VerifyPeer(src, raw, allow)
			return err
		},
	}
}

// ClientConfig is the TLS config of a mesh connection to a peer expected
// to be one of the SPIFFE IDs allow accepts (nil accepts any identity the
// roots vouch for, as Istio does when a destination names none).
func ClientConfig(src Source, allow func(spiffeID string) bool) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: CurvePreferences,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Certificate()
		},
		// The chain and the SPIFFE ID are checked by VerifyPeer: an SVID
		// has no DNS name for crypto/tls to match.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := VerifyPeer(src, raw, allow)
			return err
		},
	}
}

// PeerID is the SPIFFE ID of a verified TLS peer, or "" for a plaintext
// connection or one whose peer sent no certificate.
func PeerID(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return SPIFFEID(cs.PeerCertificates[0])
}

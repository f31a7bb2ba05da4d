package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ControlPlaneConfig is the TLS config the proxy dials the control plane's
// secure port with (xDS and the CA): TLS 1.3, src's current certificate as
// client certificate (none before the first is issued: the CA then
// authenticates the caller by its credential), and the server's
// certificate verified against src's roots for the name dialled
// (ServerName; the address's host by default, "localhost" for a Unix
// socket), as a control plane's certificate carries DNS and IP names, not
// a SPIFFE ID.
func ControlPlaneConfig(src Source) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: CurvePreferences,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := src.Certificate()
			if err != nil {
				return &tls.Certificate{}, nil
			}
			return c, nil
		},
		// Verified in VerifyConnection against the roots of the moment: a
		// static RootCAs would miss a root rotation.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(src.Roots(), cs)
		},
	}
}

func verifyServer(roots *x509.CertPool, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("certs: the control plane sent no certificate")
	}
	if roots == nil {
		return errors.New("certs: no root certificate to verify the control plane with (XDS_ROOT_CA)")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       cs.ServerName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("certs: the control plane's certificate (as %q): %w; check XDS_ROOT_CA is the mesh's root-cert.pem", cs.ServerName, err)
	}
	return nil
}

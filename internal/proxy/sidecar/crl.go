package sidecar

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// revocation is a DestinationRule caCrl: the certificate revocation lists
// of a PEM file, read with the other origination files at each handshake,
// so a replaced file applies to the next connection.
type revocation struct {
	file string
	crls []*x509.RevocationList
}

// loadRevocation reads the CRLs of file. A file that cannot be read or
// holds no CRL is an error: the origination fails closed, as Envoy refuses
// a cluster whose crl it cannot load.
func loadRevocation(file string) (*revocation, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("the DestinationRule's caCrl: %w; the connection is refused until the file can be read", err)
	}
	r := &revocation{file: file}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the DestinationRule's caCrl %s: CRL %d: %w", file, len(r.crls), err)
		}
		r.crls = append(r.crls, crl)
	}
	if len(r.crls) == 0 {
		return nil, fmt.Errorf("the DestinationRule's caCrl %s: no PEM \"X509 CRL\" block in it", file)
	}
	return r, nil
}

// check refuses chain (verified, leaf first, root last) when a CRL revokes
// one of its certificates. As Envoy (CRL_CHECK_ALL) does, every CA of the
// chain must have issued a CRL of the file that its signature proves and
// whose validity window holds now; a CA without one fails the check, since
// nothing says its certificates are not revoked.
func (r *revocation) check(chain []*x509.Certificate, now time.Time) error {
	for i, c := range chain {
		issuer := c
		if i+1 < len(chain) {
			issuer = chain[i+1]
		}
		crl, err := r.crlOf(issuer, now)
		if err != nil {
			return fmt.Errorf("the server's certificate %d (%s): %w", i, c.Subject, err)
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return fmt.Errorf("the server's certificate %d (%s, serial %s) is revoked by the CRL of %s in %s", i, c.Subject, c.SerialNumber, issuer.Subject, r.file)
			}
		}
	}
	return nil
}

// crlOf is the CRL of the file that issuer signed and that is current.
func (r *revocation) crlOf(issuer *x509.Certificate, now time.Time) (*x509.RevocationList, error) {
	var problem error
	for _, crl := range r.crls {
		if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
			continue
		}
		if err := crl.CheckSignatureFrom(issuer); err != nil {
			problem = fmt.Errorf("the CRL of %s in %s is not signed by it: %w", issuer.Subject, r.file, err)
			continue
		}
		if now.Before(crl.ThisUpdate) {
			problem = fmt.Errorf("the CRL of %s in %s is not valid until %s", issuer.Subject, r.file, crl.ThisUpdate.UTC().Format(time.RFC3339))
			continue
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			problem = fmt.Errorf("the CRL of %s in %s expired at %s: replace it with a current one", issuer.Subject, r.file, crl.NextUpdate.UTC().Format(time.RFC3339))
			continue
		}
		return crl, nil
	}
	if problem != nil {
		return nil, problem
	}
	return nil, errors.New("no CRL of its issuer " + issuer.Subject.String() + " in " + r.file + " (with a caCrl, every CA of the chain needs one)")
}

// checkChains passes when one of the verified chains passes check.
func (r *revocation) checkChains(chains [][]*x509.Certificate) error {
	if r == nil {
		return nil
	}
	now := time.Now()
	var first error
	for _, chain := range chains {
		err := r.check(chain, now)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

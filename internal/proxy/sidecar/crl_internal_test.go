package sidecar

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/certtest"
)

// With an intermediate CA, every CA of the chain needs a current CRL of
// its own in the file, as Envoy's whole-chain check requires; a CRL of the
// root revoking the intermediate refuses the leaves under it.
func TestRevocationWholeChain(t *testing.T) {
	root := certtest.NewCA(t)
	inter := root.Intermediate(t)
	leaf := inter.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"s.example"}}).Leaf
	chain := []*x509.Certificate{leaf, inter.Cert, root.Cert}
	now := time.Now()
	crl := func(ca *certtest.CA, serials ...*big.Int) []byte {
		tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
		for _, s := range serials {
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
		}
		der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		pem  []byte
		want string // "" passes
	}{
		{"both CAs' CRLs, nothing revoked", append(crl(inter), crl(root)...), ""},
		{"the intermediate's only", crl(inter), "no CRL of its issuer"},
		{"the leaf revoked", append(crl(inter, leaf.SerialNumber), crl(root)...), "is revoked"},
		{"the intermediate revoked by the root", append(crl(inter), crl(root, inter.Cert.SerialNumber)...), "certificate 1"},
		{"no CRL in the file", []byte("not a CRL"), `no PEM "X509 CRL" block`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(file, tc.pem, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := loadRevocation(file)
			if err == nil {
				err = r.checkChains([][]*x509.Certificate{chain})
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

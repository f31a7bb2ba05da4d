package sidecar_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// writeCRL writes a PEM CRL of ca revoking serials, valid from thisUpdate
// for an hour.
func writeCRL(t *testing.T, file string, ca *certtest.CA, thisUpdate time.Time, serials ...*big.Int) {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(time.Hour)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A DestinationRule's caCrl, as Envoy checks a validation context's crl:
// SIMPLE and MUTUAL origination refuse a server whose certificate the CRL
// revokes (503, upstream connection failure) and reach one it does not; a
// replaced file applies to the next connection; a CRL that is missing,
// not signed by the server's CA, or expired refuses every server (fail
// closed).
func TestDestinationRuleCaCrl(t *testing.T) {
	leak.Check(t)
	const base = "127.93.13"
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	caFile, _ := writePEM(t, dir, "ca", &tls.Certificate{Certificate: [][]byte{ca.Cert.Raw}})
	clientFile, clientKey := writePEM(t, dir, "client", ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"sleep.client"}}))
	revoked := ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"revoked.example"}})
	good := ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"good.example"}})
	fresh := ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"fresh.example"}})
	tlsBackend(t, base+".5:8443", "revoked", revoked, nil)
	tlsBackend(t, base+".6:8443", "good", good, nil)
	tlsBackend(t, base+".7:8443", "mutual-revoked", revoked, ca.Pool())
	oneShotTLSBackend(t, base+".8:8443", "fresh", fresh)

	crl := filepath.Join(dir, "ca.crl")
	now := time.Now().Add(-time.Minute)
	writeCRL(t, crl, ca, now, revoked.Leaf.SerialNumber)
	forged := filepath.Join(dir, "forged.crl") // same issuer name, another key
	writeCRL(t, forged, certtest.NewCA(t), now)
	expired := filepath.Join(dir, "expired.crl")
	writeCRL(t, expired, ca, now.Add(-3*time.Hour))

	simple := func(sni, crlFile string) string {
		return `{mode: SIMPLE, caCertificates: ` + caFile + `, caCrl: ` + crlFile + `, sni: ` + sni + `}`
	}
	cfg := externalTLSEntry("revoked.example", base+".5", simple("revoked.example", crl)) +
		externalTLSEntry("good.example", base+".6", simple("good.example", crl)) +
		externalTLSEntry("mutual.example", base+".7", `{mode: MUTUAL, caCertificates: `+caFile+`, caCrl: `+crl+`, clientCertificate: `+clientFile+`, privateKey: `+clientKey+`, sni: revoked.example}`) +
		externalTLSEntry("fresh.example", base+".8", simple("fresh.example", crl)) +
		externalTLSEntry("missing.example", base+".6", simple("good.example", filepath.Join(dir, "missing.crl"))) +
		externalTLSEntry("forged.example", base+".6", simple("good.example", forged)) +
		externalTLSEntry("expired.example", base+".6", simple("good.example", expired))
	m := meshtest.New(t, cfg)
	client := m.Sidecar("sleep", base+".1", nil)
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()

	refused := func(host, why string) {
		t.Helper()
		code, flags, body, _ := get(c, "http://"+host+":8443/", nil)
		if code != http.StatusServiceUnavailable || !strings.Contains(flags, "UF") {
			t.Errorf("%s (%s): %d %s %q, want 503 UF", host, why, code, flags, body)
		}
	}
	served := func(host, want string) {
		t.Helper()
		if code, flags, body, _ := get(c, "http://"+host+":8443/", nil); code != http.StatusOK || body != want {
			t.Errorf("%s: %d %s %q, want %s's 200", host, code, flags, body, want)
		}
	}
	refused("revoked.example", "SIMPLE, the server's certificate is revoked")
	served("good.example", "good")
	refused("mutual.example", "MUTUAL, the server's certificate is revoked")
	served("fresh.example", "fresh")
	refused("missing.example", "the caCrl file does not exist")
	refused("forged.example", "the CRL is not signed by the server's CA")
	refused("expired.example", "the CRL expired")

	// The file is read again for the next connection (fresh's server
	// closes each one): revoking fresh refuses the next handshake, and
	// taking it off the list admits it again.
	writeCRL(t, crl, ca, now, revoked.Leaf.SerialNumber, fresh.Leaf.SerialNumber)
	refused("fresh.example", "revoked by the replaced CRL file")
	writeCRL(t, crl, ca, now, revoked.Leaf.SerialNumber)
	served("fresh.example", "fresh")
}

// oneShotTLSBackend serves name over TLS with cert at addr, closing each
// connection after its response, so every request is a new handshake.
func oneShotTLSBackend(t *testing.T, addr, name string, cert *tls.Certificate) {
	t.Helper()
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{*cert}})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	hs.SetKeepAlivesEnabled(false)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); ln.Close() })
}

package certtest

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// AssertNoPrivateKey fails t if text (a page, a log, a dump; where names
// it) holds a PEM private key or key's secret in any of the encodings it
// could leak in: raw, hex or base64 of its scalar, of its SEC 1 DER or of
// its PKCS #8 DER.
func AssertNoPrivateKey(t testing.TB, where, text string, key *ecdsa.PrivateKey) {
	t.Helper()
	if strings.Contains(text, "PRIVATE KEY") {
		t.Errorf("%s holds a PEM private key", where)
	}
	d, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string][]byte{"scalar": d}
	if der, err := x509.MarshalECPrivateKey(key); err == nil {
		forms["SEC 1 DER"] = der
	}
	if der, err := x509.MarshalPKCS8PrivateKey(key); err == nil {
		forms["PKCS #8 DER"] = der
	}
	for name, b := range forms {
		for enc, s := range map[string]string{
			"raw":        string(b),
			"hex":        hex.EncodeToString(b),
			"HEX":        strings.ToUpper(hex.EncodeToString(b)),
			"base64":     base64.StdEncoding.EncodeToString(b),
			"base64url":  base64.RawURLEncoding.EncodeToString(b),
			"base64-raw": base64.RawStdEncoding.EncodeToString(b),
		} {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the private key (%s, %s)", where, name, enc)
			}
		}
	}
}

package jwtauthn_test

import (
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
)

// FuzzVerify: whatever a client sends as a token, verification answers
// without panicking, and passes only what the keys signed.
func FuzzVerify(f *testing.F) {
	keys := jwks(jwk("r1", rsaKey(f, 0)), jwk("e1", ecKey))
	good := sign(f, "ES256", "e1", ecKey, claims(nil))
	for _, s := range []string{good, "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30.", good[:len(good)-2], "x"} {
		f.Add(s)
	}
	fl := filter(istioShape(provider(keys)))
	signed := good[:strings.LastIndexByte(good, '.')]
	f.Fuzz(func(t *testing.T, tok string) {
		res, d := fl.Verify(request("/", "Authorization", "Bearer "+tok))
		// Nobody but the keys' owner can sign a payload: what passes
		// carries the seed token's header and payload, byte for byte.
		if d == nil && res != nil && !strings.Contains(tok, signed) {
			t.Fatalf("token %q verified", tok)
		}
	})
}

// FuzzParseJWKS: any key set parses or is refused, without panicking.
func FuzzParseJWKS(f *testing.F) {
	f.Add(jwks(jwk("r1", rsaKey(f, 0)), jwk("e1", ecKey)))
	f.Add(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`)
	f.Add(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"},{"kty":"oct","k":"c2VjcmV0"},{"kty":"OKP","crv":"Ed25519","x":"` + string(make([]byte, 43)) + `"}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		ks, st, _ := jwtauthn.ParseJWKS([]byte(s))
		if (ks == nil) != (st != jwtauthn.Ok) {
			t.Fatalf("key set %v with status %v", ks, st)
		}
	})
}

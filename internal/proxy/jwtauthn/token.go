package jwtauthn

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
)

// MaxTokenBytes bounds a token the proxy will parse; a longer one fails
// as malformed before any decoding. Headers are bounded at 60 KiB, so
// this only keeps the JSON decoding of one token small.
const MaxTokenBytes = 16 << 10

// token is a parsed, not yet verified, JWT.
type token struct {
	alg, kid  string
	signed    string // header.payload, what the signature covers
	sig       []byte
	payload64 string // the payload as it came, base64url

	iss, sub string
	aud      []string
	exp, nbf int64
	hasExp   bool
	hasNbf   bool
	claims   map[string]any
}

// parseToken splits and decodes a compact JWS, checking what
// jwt_verify_lib checks before a key is chosen.
func parseToken(s string) (*token, Status) {
	if len(s) > MaxTokenBytes {
		return nil, JwtBadFormat
	}
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return nil, JwtBadFormat
	}
	j := strings.IndexByte(s[i+1:], '.')
	if j < 0 {
		return nil, JwtBadFormat
	}
	j += i + 1
	if strings.IndexByte(s[j+1:], '.') >= 0 {
		return nil, JwtBadFormat
	}
	t := &token{signed: s[:j], payload64: s[i+1 : j]}

	hb, err := b64(s[:i])
	if err != nil {
		return nil, JwtHeaderParseErrorBadBase64
	}
	var hdr map[string]json.RawMessage
	if json.Unmarshal(hb, &hdr) != nil || hdr == nil {
		return nil, JwtHeaderParseErrorBadJSON
	}
	alg, ok := hdr["alg"]
	if !ok || json.Unmarshal(alg, &t.alg) != nil {
		return nil, JwtHeaderBadAlg
	}
	if _, ok := algorithms[t.alg]; !ok {
		// "none" among them: an unsigned token is never accepted.
		return nil, JwtHeaderNotImplementedAlg
	}
	if kid, ok := hdr["kid"]; ok && json.Unmarshal(kid, &t.kid) != nil {
		return nil, JwtHeaderBadKid
	}

	pb, err := b64(s[i+1 : j])
	if err != nil {
		return nil, JwtPayloadParseErrorBadBase64
	}
	d := json.NewDecoder(bytes.NewReader(pb))
	d.UseNumber()
	if d.Decode(&t.claims) != nil || t.claims == nil || d.More() {
		return nil, JwtPayloadParseErrorBadJSON
	}
	if st := t.readClaims(); st != Ok {
		return nil, st
	}
	if t.sig, err = b64(s[j+1:]); err != nil {
		return nil, JwtSignatureParseErrorBadBase64
	}
	return t, Ok
}

// readClaims reads the registered claims Envoy checks, refusing them in
// a type it would refuse.
func (t *token) readClaims() Status {
	if v, ok := t.claims["iss"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return JwtPayloadParseErrorIssNotString
		}
		t.iss = s
	}
	if v, ok := t.claims["sub"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return JwtPayloadParseErrorSubNotString
		}
		t.sub = s
	}
	switch v := t.claims["aud"].(type) {
	case nil:
		if _, ok := t.claims["aud"]; ok {
			return JwtPayloadParseErrorAudNotString
		}
	case string:
		t.aud = []string{v}
	case []any:
		for _, a := range v {
			s, ok := a.(string)
			if !ok {
				return JwtPayloadParseErrorAudNotString
			}
			t.aud = append(t.aud, s)
		}
	default:
		return JwtPayloadParseErrorAudNotString
	}
	var ok bool
	if t.exp, t.hasExp, ok = intClaim(t.claims, "exp"); !ok {
		return JwtPayloadParseErrorExpNotInteger
	}
	if t.nbf, t.hasNbf, ok = intClaim(t.claims, "nbf"); !ok {
		return JwtPayloadParseErrorNbfNotInteger
	}
	if _, _, ok = intClaim(t.claims, "iat"); !ok {
		return JwtPayloadParseErrorIatNotInteger
	}
	return Ok
}

// intClaim reads a NumericDate claim: a whole number of seconds.
func intClaim(claims map[string]any, name string) (v int64, present, ok bool) {
	raw, present := claims[name]
	if !present {
		return 0, false, true
	}
	n, isNum := raw.(json.Number)
	if !isNum {
		return 0, true, false
	}
	v, err := n.Int64()
	if err != nil || v < 0 {
		return 0, true, false
	}
	return v, true, true
}

// b64 decodes base64url, with or without padding.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// algorithm is how one JWS alg verifies.
type algorithm struct {
	kty  string // the JWK key type it needs
	hash crypto.Hash
	pss  bool
	crv  string // EC: the curve it needs
}

var algorithms = map[string]algorithm{
	"RS256": {kty: "RSA", hash: crypto.SHA256},
	"RS384": {kty: "RSA", hash: crypto.SHA384},
	"RS512": {kty: "RSA", hash: crypto.SHA512},
	"PS256": {kty: "RSA", hash: crypto.SHA256, pss: true},
	"PS384": {kty: "RSA", hash: crypto.SHA384, pss: true},
	"PS512": {kty: "RSA", hash: crypto.SHA512, pss: true},
	"ES256": {kty: "EC", hash: crypto.SHA256, crv: "P-256"},
	"ES384": {kty: "EC", hash: crypto.SHA384, crv: "P-384"},
	"ES512": {kty: "EC", hash: crypto.SHA512, crv: "P-521"},
	"HS256": {kty: "oct", hash: crypto.SHA256},
	"HS384": {kty: "oct", hash: crypto.SHA384},
	"HS512": {kty: "oct", hash: crypto.SHA512},
	"EdDSA": {kty: "OKP"},
}

// verifySignature checks t's signature with the keys, as jwt_verify_lib
// does: a key whose kid differs from the token's (both set), or whose alg
// differs, is skipped; any other key of the right type that verifies the
// signature accepts the token.
func verifySignature(t *token, keys *KeySet) Status {
	a := algorithms[t.alg]
	matched := false
	for i := range keys.keys {
		k := &keys.keys[i]
		if t.kid != "" && k.kid != "" && k.kid != t.kid {
			continue
		}
		if k.alg != "" && k.alg != t.alg {
			continue
		}
		if k.kty != a.kty || (a.crv != "" && k.crv != a.crv) {
			continue
		}
		matched = true
		if k.verify(a, t) {
			return Ok
		}
	}
	if !matched {
		return JwksKidAlgMismatch
	}
	return JwtVerificationFail
}

func (k *key) verify(a algorithm, t *token) bool {
	switch k.kty {
	case "RSA":
		d := digest(a.hash, t.signed)
		if a.pss {
			return rsa.VerifyPSS(k.rsa, a.hash, d, t.sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(k.rsa, a.hash, d, t.sig) == nil
	case "EC":
		// JWS carries r and s as two fixed-size big-endian halves, not DER.
		size := (k.ec.Curve.Params().BitSize + 7) / 8
		if len(t.sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(t.sig[:size])
		s := new(big.Int).SetBytes(t.sig[size:])
		return ecdsa.Verify(k.ec, digest(a.hash, t.signed), r, s)
	case "oct":
		m := hmac.New(a.hash.New, k.secret)
		m.Write([]byte(t.signed))
		return hmac.Equal(m.Sum(nil), t.sig)
	case "OKP":
		return ed25519.Verify(k.ed, []byte(t.signed), t.sig)
	}
	return false
}

func digest(h crypto.Hash, s string) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256([]byte(s))
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384([]byte(s))
		return d[:]
	default:
		d := sha512.Sum512([]byte(s))
		return d[:]
	}
}

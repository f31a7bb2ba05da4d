package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Bounds on what a JWKS may hold, so a key set (inline or fetched)
// cannot make the proxy hold or try much.
const (
	MaxJWKSBytes = 1 << 20
	MaxKeys      = 256
	maxRSABits   = 8192
)

// KeySet is a parsed JWKS: the keys a token's signature is checked with.
type KeySet struct {
	keys []key
}

// Len is the number of usable keys.
func (s *KeySet) Len() int { return len(s.keys) }

type key struct {
	kid, alg, kty, crv string

	rsa    *rsa.PublicKey
	ec     *ecdsa.PublicKey
	ed     ed25519.PublicKey
	secret []byte
}

// ParseJWKS parses a JSON Web Key Set (RFC 7517). Keys the proxy cannot
// use (unknown types, malformed numbers) are skipped, as Envoy skips
// them; a set left with no usable key is an error, with the Status a
// request verified against it fails with.
func ParseJWKS(b []byte) (*KeySet, Status, error) {
	if len(b) > MaxJWKSBytes {
		return nil, JwksParseError, fmt.Errorf("JWKS is %d bytes, over the limit of %d", len(b), MaxJWKSBytes)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil || doc == nil {
		return nil, JwksParseError, fmt.Errorf("JWKS is not a JSON object: %v", err)
	}
	raw, ok := doc["keys"]
	if !ok {
		return nil, JwksNoKeys, errors.New(`JWKS has no "keys" field`)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, JwksBadKeys, errors.New(`JWKS "keys" is not an array`)
	}
	s := &KeySet{}
	var errs []error
	for i, kb := range list {
		if len(s.keys) == MaxKeys {
			errs = append(errs, fmt.Errorf("keys past the first %d are ignored", MaxKeys))
			break
		}
		k, err := parseKey(kb)
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %w", i, err))
			continue
		}
		s.keys = append(s.keys, k)
	}
	if len(s.keys) == 0 {
		return nil, JwksNoValidKeys, fmt.Errorf("JWKS has no usable key: %w", errors.Join(errs...))
	}
	return s, Ok, errors.Join(errs...)
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
}

func parseKey(b []byte) (key, error) {
	var j jwk
	if err := json.Unmarshal(b, &j); err != nil {
		return key{}, fmt.Errorf("not a JSON key: %w", err)
	}
	if j.Use != "" && j.Use != "sig" {
		return key{}, fmt.Errorf("use %q is not for signatures", j.Use)
	}
	k := key{kid: j.Kid, alg: j.Alg, kty: j.Kty, crv: j.Crv}
	if j.Alg != "" {
		a, ok := algorithms[j.Alg]
		if !ok {
			return key{}, fmt.Errorf("alg %q is not supported", j.Alg)
		}
		if a.kty != j.Kty {
			return key{}, fmt.Errorf("alg %q does not go with kty %q", j.Alg, j.Kty)
		}
	}
	switch j.Kty {
	case "RSA":
		n, err := b64(j.N)
		if err != nil || len(n) == 0 {
			return key{}, errors.New(`RSA key's "n" is missing or not base64url`)
		}
		e, err := b64(j.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return key{}, errors.New(`RSA key's "e" is missing, not base64url or too large`)
		}
		nn := new(big.Int).SetBytes(n)
		if nn.BitLen() > maxRSABits {
			return key{}, fmt.Errorf("RSA key of %d bits is over the limit of %d", nn.BitLen(), maxRSABits)
		}
		ee := new(big.Int).SetBytes(e)
		if ee.Int64() < 3 || ee.Bit(0) == 0 {
			return key{}, errors.New(`RSA key's "e" is not an odd number >= 3`)
		}
		k.rsa = &rsa.PublicKey{N: nn, E: int(ee.Int64())}
	case "EC":
		var curve elliptic.Curve
		if k.crv == "" && j.Alg != "" {
			k.crv = algorithms[j.Alg].crv
		}
		switch k.crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return key{}, fmt.Errorf("EC curve %q is not supported", j.Crv)
		}
		x, errX := b64(j.X)
		y, errY := b64(j.Y)
		size := (curve.Params().BitSize + 7) / 8
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return key{}, errors.New(`EC key's "x" or "y" is missing, not base64url or not the curve's size`)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return key{}, fmt.Errorf("EC key is not a point on %s", k.crv)
		}
		k.ec = pub
	case "oct":
		s, err := b64(j.K)
		if err != nil || len(s) == 0 {
			return key{}, errors.New(`oct key's "k" is missing or not base64url`)
		}
		k.secret = s
	case "OKP":
		x, err := b64(j.X)
		if j.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return key{}, errors.New(`OKP key is not an Ed25519 key with a 32-byte "x"`)
		}
		k.ed = ed25519.PublicKey(x)
	case "":
		return key{}, errors.New(`"kty" is missing`)
	default:
		return key{}, fmt.Errorf("kty %q is not supported", j.Kty)
	}
	return k, nil
}

package jwtauthn_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

const issuer = "https://issuer.example"

var (
	rsaOnce    sync.Once
	rsaKeys    [2]*rsa.PrivateKey
	ecKey, _   = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherEC, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
)

func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		for j := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[j] = k
		}
	})
	return rsaKeys[i]
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk is the public half of key as a JWK with kid.
func jwk(kid string, key any) map[string]string {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return map[string]string{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PrivateKey:
		raw, _ := k.PublicKey.Bytes() // 0x04 || X || Y
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	}
	panic("unknown key type")
}

func jwks(keys ...map[string]string) string {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return string(b)
}

// sign makes a compact JWS of claims with key under alg and kid.
func sign(t testing.TB, alg, kid string, key any, claims map[string]any) string {
	t.Helper()
	hdr := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		hdr["kid"] = kid
	}
	hb, _ := json.Marshal(hdr)
	pb, _ := json.Marshal(claims)
	signed := b64(hb) + "." + b64(pb)
	d := sha256.Sum256([]byte(signed))
	var sig []byte
	var err error
	switch alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), d[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	case "none":
	default:
		t.Fatalf("sign: alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + b64(sig)
}

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func claims(extra map[string]any) map[string]any {
	c := map[string]any{"iss": issuer, "sub": "alice", "aud": "payments", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// istioShape is the filter istiod makes of one jwtRule: the provider, or
// no token at all (requires_any of the provider and allow_missing).
func istioShape(p *xdsresource.JWTProvider) *xdsresource.JWTAuthentication {
	return &xdsresource.JWTAuthentication{
		Providers: map[string]*xdsresource.JWTProvider{"origins-0": p},
		Rules: []xdsresource.JWTRule{{PathKind: xdsresource.PathPrefix, Path: "/", Requires: &xdsresource.JWTRequirement{
			Kind: xdsresource.RequireAny,
			Of:   []xdsresource.JWTRequirement{{Kind: xdsresource.RequireProvider, Provider: "origins-0"}, {Kind: xdsresource.AllowMissing}},
		}}},
		BypassCORSPreflight: true,
	}
}

func provider(keys string) *xdsresource.JWTProvider {
	return &xdsresource.JWTProvider{Issuer: issuer, Audiences: []string{"payments"}, LocalJWKS: &keys, PayloadInMetadata: issuer}
}

func request(target string, h ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://svc"+target, nil)
	r.RequestURI = target
	for i := 0; i+1 < len(h); i += 2 {
		r.Header.Add(h[i], h[i+1])
	}
	return r
}

func filter(cfg *xdsresource.JWTAuthentication) *jwtauthn.Filter {
	return jwtauthn.New(cfg, nil, jwtauthn.Options{Now: func() time.Time { return now }})
}

// TestVerify runs tokens of every kind past one RequestAuthentication
// with an inline JWKS (an RSA key "r1" and an EC key "e1"), in istiod's
// shape: a valid token passes with its principal, no token passes with
// none, any invalid token is refused with Envoy's status and code.
func TestVerify(t *testing.T) {
	keys := jwks(jwk("r1", rsaKey(t, 0)), jwk("e1", ecKey))
	f := filter(istioShape(provider(keys)))
	bearer := func(tok string) *http.Request { return request("/pay", "Authorization", "Bearer "+tok) }
	for _, tc := range []struct {
		name string
		req  *http.Request
		want jwtauthn.Status // Ok: passes
		code int
	}{
		{"RS256", bearer(sign(t, "RS256", "r1", rsaKey(t, 0), claims(nil))), jwtauthn.Ok, 0},
		{"ES256", bearer(sign(t, "ES256", "e1", ecKey, claims(nil))), jwtauthn.Ok, 0},
		{"PS256", bearer(sign(t, "PS256", "r1", rsaKey(t, 0), claims(nil))), jwtauthn.Ok, 0},
		{"no kid tries every key", bearer(sign(t, "ES256", "", ecKey, claims(nil))), jwtauthn.Ok, 0},
		{"no token", request("/pay"), jwtauthn.Ok, 0},
		{"expired within the clock skew", bearer(sign(t, "RS256", "r1", rsaKey(t, 0), claims(map[string]any{"exp": now.Add(-50 * time.Second).Unix()}))), jwtauthn.Ok, 0},
		{"audience with scheme and slash", bearer(sign(t, "RS256", "r1", rsaKey(t, 0), claims(map[string]any{"aud": []string{"other", "https://payments/"}}))), jwtauthn.Ok, 0},
		{"expired", bearer(sign(t, "RS256", "r1", rsaKey(t, 0), claims(map[string]any{"exp": now.Add(-61 * time.Second).Unix()}))), jwtauthn.JwtExpired, 401},
		{"not yet valid", bearer(sign(t, "RS256", "r1", rsaKey(t, 0), claims(map[string]any{"nbf": now.Add(2 * time.Minute).Unix()}))), jwtauthn.JwtNotYetValid, 401},
		{"wrong issuer", bearer(sign(t, "RS256", "r1", rsaKey(t, 0), claims(map[string]any{"iss": "https://evil.example"}))), jwtauthn.JwtUnknownIssuer, 401},
		{"wrong audience", bearer(sign(t, "RS256", "r1", rsaKey(t, 0), claims(map[string]any{"aud": "orders"}))), jwtauthn.JwtAudienceNotAllowed, 403},
		{"bad signature", bearer(sign(t, "RS256", "r1", rsaKey(t, 1), claims(nil))), jwtauthn.JwtVerificationFail, 401},
		{"EC signature of another key", bearer(sign(t, "ES256", "e1", otherEC, claims(nil))), jwtauthn.JwtVerificationFail, 401},
		{"unknown kid", bearer(sign(t, "RS256", "r9", rsaKey(t, 0), claims(nil))), jwtauthn.JwksKidAlgMismatch, 401},
		{"alg of another key type", bearer(sign(t, "ES256", "r1", ecKey, claims(nil))), jwtauthn.JwksKidAlgMismatch, 401},
		{"alg none", bearer(sign(t, "none", "r1", nil, claims(nil))), jwtauthn.JwtHeaderNotImplementedAlg, 401},
		{"garbage", bearer("not-a-token"), jwtauthn.JwtBadFormat, 401},
		{"exp not a number", bearer(sign(t, "RS256", "r1", rsaKey(t, 0), claims(map[string]any{"exp": "tomorrow"}))), jwtauthn.JwtPayloadParseErrorExpNotInteger, 401},
		{"token in access_token by default", request("/pay?access_token=" + sign(t, "RS256", "r9", rsaKey(t, 0), claims(nil))), jwtauthn.JwksKidAlgMismatch, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, d := f.Verify(tc.req)
			if tc.want == jwtauthn.Ok {
				if d != nil {
					t.Fatalf("refused with %d %q, want it to pass", d.Code, d.Body)
				}
				if tc.req.Header.Get("Authorization") != "" {
					t.Errorf("Authorization still in the request; a verified token is removed unless forwarded")
				}
				if strings.HasPrefix(tc.name, "no token") {
					if res != nil {
						t.Errorf("result %+v for a request without a token, want nil", res)
					}
					return
				}
				if diff := cmp.Diff([]string{issuer + "/alice"}, res.Principals()); diff != "" {
					t.Errorf("principals (-want +got):\n%s", diff)
				}
				return
			}
			if d == nil {
				t.Fatalf("passed with %+v, want %v", res, tc.want)
			}
			if d.Status != tc.want || d.Code != tc.code || d.Body != tc.want.String() {
				t.Errorf("refused with %v %d %q, want %v %d", d.Status, d.Code, d.Body, tc.want, tc.code)
			}
			wantAuth := `Bearer realm="http://svc` + tc.req.URL.RequestURI() + `", error="invalid_token"`
			if len(tc.req.URL.RequestURI()) > 256 {
				wantAuth = `Bearer realm="http://svc` + tc.req.URL.RequestURI()[:256] + `", error="invalid_token"`
			}
			if d.WWWAuthenticate != wantAuth {
				t.Errorf("WWW-Authenticate %q, want %q", d.WWWAuthenticate, wantAuth)
			}
		})
	}
}

// TestLocationsAndOutputs: tokens from a header with a prefix and from a
// query parameter (and only there), removed unless forwardOriginalToken;
// the payload and a claim copied to headers, and forged copies of those
// headers never reaching the app.
func TestLocationsAndOutputs(t *testing.T) {
	keys := jwks(jwk("r1", rsaKey(t, 0)))
	tok := sign(t, "RS256", "r1", rsaKey(t, 0), claims(map[string]any{"group": "admins", "level": 3}))
	payload := strings.Split(tok, ".")[1]

	t.Run("fromHeaders with prefix", func(t *testing.T) {
		p := provider(keys)
		p.FromHeaders = []xdsresource.JWTHeader{{Name: "x-jwt", ValuePrefix: "Token "}}
		p.ForwardPayloadHeader = "x-payload"
		p.ClaimToHeaders = []xdsresource.JWTClaimHeader{{Header: "x-group", Claim: "group"}, {Header: "x-level", Claim: "level"}}
		f := filter(istioShape(p))

		r := request("/", "X-Jwt", "Token "+tok, "X-Payload", "forged", "X-Group", "forged")
		res, d := f.Verify(r)
		if d != nil || res == nil {
			t.Fatalf("refused: %+v", d)
		}
		got := map[string][]string{"X-Jwt": r.Header["X-Jwt"], "X-Payload": r.Header["X-Payload"], "X-Group": r.Header["X-Group"], "X-Level": r.Header["X-Level"]}
		want := map[string][]string{"X-Jwt": nil, "X-Payload": {payload}, "X-Group": {"admins"}, "X-Level": {"3"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("headers after verification (-want +got):\n%s", diff)
		}
		if v, _ := res.Claim("group"); v != "admins" {
			t.Errorf("claim group = %v, want admins", v)
		}

		// The header without the prefix holds no token; Authorization
		// is not looked at once fromHeaders is set.
		r = request("/", "X-Jwt", tok, "Authorization", "Bearer garbage")
		if res, d := f.Verify(r); d != nil || res != nil {
			t.Errorf("a token without the prefix: result %+v, denial %+v; want no token found", res, d)
		}
		// A prefix anywhere in the value, then the token's characters.
		r = request("/", "X-Jwt", `scheme Token "`+tok+`"`)
		if _, d := f.Verify(r); d != nil {
			t.Errorf("token after the prefix inside the value refused: %+v", d)
		}
	})

	t.Run("fromParams", func(t *testing.T) {
		p := provider(keys)
		p.FromParams = []string{"jwt"}
		f := filter(istioShape(p))
		r := request("/q?a=1&jwt=" + tok + "&b=2")
		if res, d := f.Verify(r); d != nil || res == nil {
			t.Fatalf("refused: %+v", d)
		}
		if r.URL.RawQuery != "a=1&b=2" || r.RequestURI != "/q?a=1&b=2" {
			t.Errorf("query %q, request URI %q; want the token's parameter removed, the others kept", r.URL.RawQuery, r.RequestURI)
		}
		r = request("/q?jwt=bad")
		if _, d := f.Verify(r); d == nil || d.Code != 401 {
			t.Errorf("bad token in the parameter: %+v, want 401", d)
		}
	})

	t.Run("forwardOriginalToken", func(t *testing.T) {
		p := provider(keys)
		p.Forward = true
		f := filter(istioShape(p))
		r := request("/", "Authorization", "Bearer "+tok)
		if _, d := f.Verify(r); d != nil {
			t.Fatalf("refused: %+v", d)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+tok {
			t.Errorf("Authorization %q, want the token forwarded", got)
		}
	})

	t.Run("CORS preflight", func(t *testing.T) {
		f := filter(istioShape(provider(keys)))
		r := request("/", "Authorization", "Bearer garbage", "Origin", "https://app", "Access-Control-Request-Method", "POST")
		r.Method = http.MethodOptions
		if _, d := f.Verify(r); d != nil {
			t.Errorf("preflight refused: %+v", d)
		}
	})

	t.Run("required provider", func(t *testing.T) {
		cfg := istioShape(provider(keys))
		cfg.Rules[0].Requires = &xdsresource.JWTRequirement{Kind: xdsresource.RequireProvider, Provider: "origins-0"}
		_, d := filter(cfg).Verify(request("/"))
		if d == nil || d.Status != jwtauthn.JwtMissed || d.WWWAuthenticate != `Bearer realm="http://svc/"` {
			t.Errorf("no token where one is required: %+v, want 401 Jwt is missing without error=", d)
		}
	})
}

// TestBadInlineJWKS: a JWKS without a usable key fails the tokens it
// should verify, and only them.
func TestBadInlineJWKS(t *testing.T) {
	f := filter(istioShape(provider(`{"keys":[{"kty":"RSA","n":"AQAB"}]}`)))
	_, d := f.Verify(request("/", "Authorization", "Bearer "+sign(t, "RS256", "r1", rsaKey(t, 0), claims(nil))))
	if d == nil || d.Status != jwtauthn.JwksNoValidKeys {
		t.Errorf("token against a JWKS with no usable key: %+v, want %v", d, jwtauthn.JwksNoValidKeys)
	}
	if res, d := f.Verify(request("/")); res != nil || d != nil {
		t.Errorf("request without a token: %+v %+v, want it to pass", res, d)
	}
}

// TestRemoteJWKSRotation serves a JWKS on loopback that rotates from
// key r1 to key r2: before the first fetch a token fails (never waiting
// on it), then r1's tokens pass; after the rotation r2's token passes
// once the fetcher (cache duration 200 ms) has the new set, and r1's
// fails. Closing the cache stops the fetcher.
func TestRemoteJWKSRotation(t *testing.T) {
	leak.Check(t)
	var current atomic.Value
	current.Store(jwks(jwk("r1", rsaKey(t, 0))))
	release := make(chan struct{})
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) == 1 {
			<-release // the first fetch waits, so a request sees no keys yet
		}
		w.Write([]byte(current.Load().(string)))
	}))
	defer srv.Close()
	cache := jwtauthn.NewCache(jwtauthn.CacheOptions{})
	defer cache.Close()

	p := &xdsresource.JWTProvider{Issuer: issuer, RemoteJWKS: &xdsresource.RemoteJWKS{URI: srv.URL + "/jwks", CacheDuration: 200 * time.Millisecond}}
	f := jwtauthn.New(istioShape(p), cache, jwtauthn.Options{Now: func() time.Time { return now }})
	tok1 := sign(t, "RS256", "r1", rsaKey(t, 0), claims(nil))
	tok2 := sign(t, "RS256", "r2", rsaKey(t, 1), claims(nil))
	verify := func(tok string) *jwtauthn.Denial {
		_, d := f.Verify(request("/", "Authorization", "Bearer "+tok))
		return d
	}

	if d := verify(tok1); d == nil || d.Status != jwtauthn.JwksFetchFail {
		t.Fatalf("before the first fetch: %+v, want %v at once", d, jwtauthn.JwksFetchFail)
	}
	close(release)
	eventually(t, func() bool { return verify(tok1) == nil }, "r1's token passes after the first fetch")

	current.Store(jwks(jwk("r2", rsaKey(t, 1))))
	eventually(t, func() bool { return verify(tok2) == nil }, "r2's token passes after the rotation")
	if d := verify(tok1); d == nil || d.Status != jwtauthn.JwksKidAlgMismatch {
		t.Errorf("r1's token after the rotation: %+v, want %v", d, jwtauthn.JwksKidAlgMismatch)
	}
}

func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func BenchmarkVerifyRS256(b *testing.B) {
	keys := jwks(jwk("r1", rsaKey(b, 0)))
	f := filter(istioShape(provider(keys)))
	tok := sign(b, "RS256", "r1", rsaKey(b, 0), claims(nil))
	b.ReportAllocs()
	for b.Loop() {
		r := request("/", "Authorization", "Bearer "+tok)
		if _, d := f.Verify(r); d != nil {
			b.Fatal(d.Body)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	f := filter(istioShape(provider(jwks(jwk("e1", ecKey)))))
	tok := sign(b, "ES256", "e1", ecKey, claims(nil))
	b.ReportAllocs()
	for b.Loop() {
		r := request("/", "Authorization", "Bearer "+tok)
		if _, d := f.Verify(r); d != nil {
			b.Fatal(d.Body)
		}
	}
}

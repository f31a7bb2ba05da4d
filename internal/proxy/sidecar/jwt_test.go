package sidecar_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// jwtIssuer signs ES256 tokens with one key and publishes it as a JWKS.
type jwtIssuer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newJWTIssuer(t *testing.T, kid string) *jwtIssuer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &jwtIssuer{key: k, kid: kid}
}

func (j *jwtIssuer) jwks() string {
	raw, _ := j.key.PublicKey.Bytes()
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": j.kid, "alg": "ES256",
		"x": base64.RawURLEncoding.EncodeToString(raw[1:33]), "y": base64.RawURLEncoding.EncodeToString(raw[33:])}}})
	return string(b)
}

// token signs claims; its payload segment is what outputPayloadToHeader
// carries.
func (j *jwtIssuer) token(t *testing.T, claims map[string]any) (tok, payload string) {
	t.Helper()
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	payload = enc(claims)
	signed := enc(map[string]string{"alg": "ES256", "typ": "JWT", "kid": j.kid}) + "." + payload
	d := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, j.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), payload
}

// jwtMesh is payment (http 9080, app base.2, with a sidecar) and a sleep
// sidecar at base.1 to call it from; the payment app answers with the
// Authorization and X-Jwt-Payload headers it saw and counts requests.
func jwtMesh(t *testing.T, base, policy string) (*meshtest.Mesh, *meshtest.Pod, *atomic.Int64) {
	t.Helper()
	m := meshtest.New(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: payment}
spec:
  selector: {app: payment}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: payment}
spec: {address: %s.2, labels: {app: payment, security.istio.io/tlsMode: istio}}
`, base), meshtest.WithFile("requestauthn.yaml", policy))
	var seen atomic.Int64
	m.Backend(base+".2:9080", "payment", func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		w.Header().Set("X-Seen-Authorization", r.Header.Get("Authorization"))
		w.Header().Set("X-Seen-Payload", strings.Join(r.Header.Values("X-Jwt-Payload"), ","))
		w.Header().Set("X-Seen-Sub", r.Header.Get("X-Jwt-Sub"))
		fmt.Fprint(w, "payment")
	})
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment"})
	sleep := m.Sidecar("sleep", base+".1", nil)
	m.WaitSynced()
	return m, sleep, &seen
}

func requestAuthn(selector, rule string) string {
	return `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: payment-jwt, namespace: default}
spec:
  selector: {matchLabels: {app: ` + selector + `}}
  jwtRules:
  - ` + strings.ReplaceAll(strings.TrimSpace(rule), "\n", "\n    ") + "\n"
}

// A RequestAuthentication with an inline JWKS on payment, through real
// sidecars (sleep calls payment): a valid token gets payment's 200, and
// the app saw the payload header but not the token (forwardOriginalToken
// unset) nor the claim's forged copy; an expired or forged token gets
// Envoy's 401 with its reason and WWW-Authenticate from payment's sidecar
// and never reaches the app; no token at all passes (no
// AuthorizationPolicy asks for one).
func TestRequestAuthenticationInlineJWKS(t *testing.T) {
	leak.Check(t)
	const base = "127.77.160"
	iss := newJWTIssuer(t, "k1")
	policy := requestAuthn("payment", fmt.Sprintf(`
issuer: https://auth.example
audiences: [payment]
jwks: '%s'
outputPayloadToHeader: x-jwt-payload
outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]`, iss.jwks()))
	_, sleep, seen := jwtMesh(t, base, policy)
	c := sleep.Client()
	defer c.CloseIdleConnections()
	url := "http://payment:9080/pay"

	tok, payload := iss.token(t, map[string]any{"iss": "https://auth.example", "sub": "alice", "aud": "payment", "exp": time.Now().Add(time.Hour).Unix()})
	code, flags, body, h := get(c, url, map[string]string{"Authorization": "Bearer " + tok, "X-Jwt-Sub": "mallory"})
	if code != 200 || body != "payment" {
		t.Fatalf("valid token: %d %s %q, want payment's 200", code, flags, body)
	}
	if got := h.Get("X-Seen-Authorization"); got != "" {
		t.Errorf("the app saw Authorization %q; the verified token is removed unless forwardOriginalToken", got)
	}
	if got := h.Get("X-Seen-Payload"); got != payload {
		t.Errorf("the app saw X-Jwt-Payload %q, want the token's payload %q", got, payload)
	}
	if got := h.Get("X-Seen-Sub"); got != "alice" {
		t.Errorf("the app saw X-Jwt-Sub %q, want the claim alice (the client's forged value removed)", got)
	}

	before := seen.Load()
	expired, _ := iss.token(t, map[string]any{"iss": "https://auth.example", "sub": "alice", "aud": "payment", "exp": time.Now().Add(-5 * time.Minute).Unix()})
	forged, _ := newJWTIssuer(t, "k1").token(t, map[string]any{"iss": "https://auth.example", "sub": "alice", "aud": "payment"})
	for _, tc := range []struct{ name, tok, body string }{
		{"expired", expired, "Jwt is expired"},
		{"signed by another key", forged, "Jwt verification fails"},
		{"garbage", "x.y", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
	} {
		code, _, body, h := get(c, url, map[string]string{"Authorization": "Bearer " + tc.tok})
		if code != http.StatusUnauthorized || body != tc.body {
			t.Errorf("%s token: %d %q, want 401 %q", tc.name, code, body, tc.body)
		}
		if got, want := h.Get("Www-Authenticate"), `Bearer realm="http://payment:9080/pay", error="invalid_token"`; got != want {
			t.Errorf("%s token: WWW-Authenticate %q, want %q", tc.name, got, want)
		}
	}
	if n := seen.Load() - before; n != 0 {
		t.Errorf("the app saw %d of the requests with invalid tokens, want none", n)
	}

	code, _, body, h = get(c, url, map[string]string{"X-Jwt-Payload": "forged"})
	if code != 200 || body != "payment" {
		t.Errorf("no token: %d %q, want payment's 200 (nothing requires a token)", code, body)
	}
	if got := h.Get("X-Seen-Payload"); got != "" {
		t.Errorf("no token: the app saw a forged X-Jwt-Payload %q", got)
	}
}

// A RequestAuthentication with a jwksUri served on loopback and
// forwardOriginalToken: payment's sidecar fetches the key set in the
// background; once it has it a valid token gets 200 and the app sees the
// token it was sent; a token of an issuer with no rule is 401 and never
// reaches the app; a request without a token passes.
func TestRequestAuthenticationJWKSURI(t *testing.T) {
	leak.Check(t)
	const base = "127.77.161"
	iss := newJWTIssuer(t, "k1")
	ln, err := net.Listen("tcp", base+".9:0")
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	jwksSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, iss.jwks())
	})}
	go jwksSrv.Serve(ln)
	t.Cleanup(func() { jwksSrv.Close() })

	policy := requestAuthn("payment", fmt.Sprintf(`
issuer: https://auth.example
jwksUri: http://%s/jwks.json
forwardOriginalToken: true`, ln.Addr()))
	m, sleep, seen := jwtMesh(t, base, policy)
	c := sleep.Client()
	defer c.CloseIdleConnections()
	url := "http://payment:9080/pay"

	tok, _ := iss.token(t, map[string]any{"iss": "https://auth.example", "sub": "bob", "exp": time.Now().Add(time.Hour).Unix()})
	meshtest.Eventually(t, 10*time.Second, func() string {
		code, _, body, h := get(c, url, map[string]string{"Authorization": "Bearer " + tok})
		if code != 200 {
			return fmt.Sprintf("valid token: %d %q, want 200 once the sidecar has fetched the JWKS", code, body)
		}
		if got := h.Get("X-Seen-Authorization"); got != "Bearer "+tok {
			return fmt.Sprintf("the app saw Authorization %q, want the token forwarded", got)
		}
		return ""
	})
	if fetches.Load() == 0 {
		t.Error("the JWKS server was never asked")
	}

	before := seen.Load()
	other, _ := newJWTIssuer(t, "k1").token(t, map[string]any{"iss": "https://other.example", "sub": "bob"})
	if code, _, body, _ := get(c, url, map[string]string{"Authorization": "Bearer " + other}); code != 401 || body != "Jwt issuer is not configured" {
		t.Errorf("token of an unknown issuer: %d %q, want 401 %q", code, body, "Jwt issuer is not configured")
	}
	if n := seen.Load() - before; n != 0 {
		t.Errorf("the app saw the refused request")
	}
	if code, _, body, _ := get(c, url, nil); code != 200 || body != "payment" {
		t.Errorf("no token: %d %q, want 200", code, body)
	}

	// A config update that keeps the jwksUri keeps its keys: every
	// request while the update lands passes (no moment without keys),
	// and nothing is fetched again.
	fetched := fetches.Load()
	m.Write("requestauthn.yaml", requestAuthn("payment", fmt.Sprintf(`
issuer: https://auth.example
jwksUri: http://%s/jwks.json
outputPayloadToHeader: x-jwt-payload`, ln.Addr())))
	meshtest.Eventually(t, 10*time.Second, func() string {
		code, _, body, h := get(c, url, map[string]string{"Authorization": "Bearer " + tok})
		if code != 200 {
			t.Fatalf("while the update lands: %d %q, want 200 throughout", code, body)
		}
		if h.Get("X-Seen-Payload") == "" {
			return "the updated rule (outputPayloadToHeader) has not reached the sidecar"
		}
		return ""
	})
	if n := fetches.Load() - fetched; n != 0 {
		t.Errorf("the update fetched the JWKS %d more times, want the cached keys kept", n)
	}
}

// RequestAuthentication with an AuthorizationPolicy that requires a
// request principal, Istio's "require JWT" recipe, through real sidecars:
// a request without a token passes authentication but is refused by
// authorization (403), one with alice's valid token is allowed, one with
// mallory's valid token is refused by the principal rule, and a token
// claiming to be alice's but signed by another key is refused by
// authentication first (401). The app sees only alice's request.
func TestRequestAuthenticationRequestPrincipals(t *testing.T) {
	leak.Check(t)
	const base = "127.77.162"
	iss := newJWTIssuer(t, "k1")
	policy := requestAuthn("payment", fmt.Sprintf(`
issuer: https://auth.example
jwks: '%s'`, iss.jwks())) + `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-alice, namespace: default}
spec:
  selector: {matchLabels: {app: payment}}
  rules:
  - from:
    - source:
        requestPrincipals: ["https://auth.example/alice"]
`
	_, sleep, seen := jwtMesh(t, base, policy)
	c := sleep.Client()
	defer c.CloseIdleConnections()
	url := "http://payment:9080/pay"
	token := func(sub string) string {
		tok, _ := iss.token(t, map[string]any{"iss": "https://auth.example", "sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
		return "Bearer " + tok
	}
	forged, _ := newJWTIssuer(t, "k1").token(t, map[string]any{"iss": "https://auth.example", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	for _, tc := range []struct {
		name, auth string
		code       int
		body       string
	}{
		{"no token", "", 403, "RBAC: access denied"},
		{"alice", token("alice"), 200, "payment"},
		{"mallory", token("mallory"), 403, "RBAC: access denied"},
		{"alice's claims signed by another key", "Bearer " + forged, 401, "Jwt verification fails"},
	} {
		var h map[string]string
		if tc.auth != "" {
			h = map[string]string{"Authorization": tc.auth}
		}
		if code, _, body, _ := get(c, url, h); code != tc.code || body != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, body, tc.code, tc.body)
		}
	}
	if n := seen.Load(); n != 1 {
		t.Errorf("the app saw %d requests, want alice's alone", n)
	}
}

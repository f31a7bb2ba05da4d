package translate_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// inboundJWT translates the test mesh plus extra for the reviews sidecar
// and decodes the jwt_authn filter of its HTTP chain (port 9080) with
// the proxy's own decoder; nil when the chain has none.
func inboundJWT(t *testing.T, extra ...string) *xdsresource.JWTAuthentication {
	t.Helper()
	r := translate.Local(world(t, "testdata/mesh", extra...), sidecarProxy, nil)
	for _, l := range r.Listeners {
		if l.Name != translate.VirtualInbound {
			continue
		}
		for _, fc := range l.FilterChains {
			if fc.GetFilterChainMatch().GetDestinationPort().GetValue() != 9080 {
				continue
			}
			b, err := proto.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			dl, err := xdsresource.DecodeListener(b)
			if err != nil {
				t.Fatalf("the proxy refuses virtualInbound: %v", err)
			}
			for _, dfc := range dl.FilterChains {
				if dfc.DestinationPort == 9080 {
					return dfc.HTTP.JWT
				}
			}
		}
	}
	t.Fatal("no inbound chain for port 9080")
	return nil
}

func requestAuthn(ns, name, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n" + spec
}

var (
	jwtKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwtJWKS   = func() string {
		raw, _ := jwtKey.PublicKey.Bytes()
		b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": "k1",
			"x": base64.RawURLEncoding.EncodeToString(raw[1:33]), "y": base64.RawURLEncoding.EncodeToString(raw[33:])}}})
		return string(b)
	}()
)

// es256 signs a token of iss for sub with jwtKey.
func es256(t *testing.T, iss string) string {
	t.Helper()
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	signed := enc(map[string]string{"alg": "ES256", "kid": "k1"}) + "." + enc(map[string]any{"iss": iss, "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	d := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, jwtKey, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestRequestAuthenticationScope: the rules of every RequestAuthentication
// that applies to the workload (mesh-wide in the root namespace, its
// namespace's, one whose selector picks it) are merged into one filter,
// providers in issuer order; one in another namespace, one whose
// selector does not pick it and one with a targetRef (gateways only) are
// not.
func TestRequestAuthenticationScope(t *testing.T) {
	jwks := "    jwks: '" + jwtJWKS + "'\n"
	cfg := inboundJWT(t,
		requestAuthn("istio-system", "mesh", "  jwtRules:\n  - issuer: z-mesh\n"+jwks),
		requestAuthn("default", "ns", "  jwtRules:\n  - issuer: b-namespace\n"+jwks),
		requestAuthn("default", "picked", "  selector: {matchLabels: {app: reviews}}\n  jwtRules:\n  - issuer: a-selected\n"+jwks),
		requestAuthn("default", "other-app", "  selector: {matchLabels: {app: ratings}}\n  jwtRules:\n  - issuer: not-mine\n"+jwks),
		requestAuthn("other", "other-ns", "  jwtRules:\n  - issuer: not-mine-either\n"+jwks),
		requestAuthn("default", "gateway", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n  jwtRules:\n  - issuer: gateway-only\n"+jwks),
	)
	if cfg == nil {
		t.Fatal("no jwt_authn filter on the inbound HTTP chain")
	}
	got := map[string]string{}
	for name, p := range cfg.Providers {
		got[name] = p.Issuer
	}
	want := map[string]string{"origins-0": "a-selected", "origins-1": "b-namespace", "origins-2": "z-mesh"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("providers (-want +got):\n%s", diff)
	}
	if p := cfg.Providers["origins-0"]; p.PayloadInMetadata != "payload" || !cmp.Equal(p.SpaceDelimitedClaims, []string{"permission", "scope"}) {
		t.Errorf("provider metadata %q, space-delimited claims %v; want istiod's payload and [permission scope]", p.PayloadInMetadata, p.SpaceDelimitedClaims)
	}
	if none := inboundJWT(t); none != nil {
		t.Errorf("a jwt_authn filter without any RequestAuthentication: %+v", none)
	}
}

// TestRequestAuthenticationSemantics runs requests through the filter the
// translator makes, compiled by the proxy: with two issuers, a valid
// token of either passes, no token passes, an unknown issuer's or a bad
// token is 401; presence REQUIRED makes a missing token 401; fields map
// onto the provider as istiod maps them.
func TestRequestAuthenticationSemantics(t *testing.T) {
	jwks := "    jwks: '" + jwtJWKS + "'\n"
	two := inboundJWT(t, requestAuthn("default", "two", "  jwtRules:\n  - issuer: issuer-a\n"+jwks+"  - issuer: issuer-b\n"+jwks))
	f := jwtauthn.New(two, nil, jwtauthn.Options{})
	call := func(f *jwtauthn.Filter, tok string) int {
		r := httptest.NewRequest(http.MethodGet, "http://reviews:9080/", nil)
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		if _, d := f.Verify(r); d != nil {
			return d.Code
		}
		return 200
	}
	for _, tc := range []struct {
		name string
		tok  string
		want int
	}{
		{"issuer a", es256(t, "issuer-a"), 200},
		{"issuer b", es256(t, "issuer-b"), 200},
		{"no token", "", 200},
		{"unknown issuer", es256(t, "issuer-c"), 401},
		{"bad token", es256(t, "issuer-a")[:40] + "x.y.z", 401},
	} {
		if got := call(f, tc.tok); got != tc.want {
			t.Errorf("two issuers, %s: %d, want %d", tc.name, got, tc.want)
		}
	}

	req := inboundJWT(t, requestAuthn("default", "req", "  jwtRules:\n  - issuer: issuer-a\n    presence: REQUIRED\n"+jwks))
	if got := call(jwtauthn.New(req, nil, jwtauthn.Options{}), ""); got != 401 {
		t.Errorf("presence REQUIRED without a token: %d, want 401", got)
	}

	full := inboundJWT(t, requestAuthn("default", "full", `  jwtRules:
  - issuer: issuer-a
    audiences: [pay]
    jwksUri: http://127.0.0.1:8080/jwks
    timeout: 2s
    fromHeaders: [{name: X-Token, prefix: "Tok "}]
    fromParams: [tok]
    forwardOriginalToken: true
    outputPayloadToHeader: x-payload
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    spaceDelimitedClaims: [roles]
`))
	p := full.Providers["origins-0"]
	want := &xdsresource.JWTProvider{
		Issuer: "issuer-a", Audiences: []string{"pay"}, Forward: true,
		FromHeaders: []xdsresource.JWTHeader{{Name: "x-token", ValuePrefix: "Tok "}}, FromParams: []string{"tok"},
		ForwardPayloadHeader: "x-payload", PayloadInMetadata: "payload", SpaceDelimitedClaims: []string{"permission", "roles", "scope"},
		ClaimToHeaders: []xdsresource.JWTClaimHeader{{Header: "x-sub", Claim: "sub"}},
		RemoteJWKS:     &xdsresource.RemoteJWKS{URI: "http://127.0.0.1:8080/jwks", Cluster: "outbound|8080||127.0.0.1", Timeout: 2 * time.Second, CacheDuration: 5 * time.Minute},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("provider (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(full.Rules[0].Path, "/") || full.Rules[0].Requires.Kind != xdsresource.RequireAny || !full.BypassCORSPreflight {
		t.Errorf("rules %+v, CORS bypass %v; want istiod's prefix / requiring the provider or allow_missing, preflight bypassed", full.Rules, full.BypassCORSPreflight)
	}
}

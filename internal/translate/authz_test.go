package translate_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/proxy/authz"
	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// authzEngines translates the test mesh plus policies for the reviews
// sidecar, decodes its virtualInbound listener with the proxy's own
// decoder and compiles the engines of the HTTP chain (port 9080) and of
// the catch-all chain (the policies compiled for TCP).
func authzEngines(t *testing.T, policies string) (httpE, tcpE *authz.Engine) {
	t.Helper()
	r := translate.Local(world(t, "testdata/mesh", policies), sidecarProxy, nil)
	for _, l := range r.Listeners {
		if l.Name != translate.VirtualInbound {
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
		for _, fc := range dl.FilterChains {
			switch {
			case fc.DestinationPort == 9080 && fc.HTTP != nil:
				if httpE, err = authz.Compile(fc.HTTP.RBAC); err != nil {
					t.Fatal(err)
				}
			case fc.DestinationPort == 0 && fc.TCP != nil:
				if tcpE, err = authz.Compile(fc.RBAC); err != nil {
					t.Fatal(err)
				}
			}
		}
		return httpE, tcpE
	}
	t.Fatal("no virtualInbound listener")
	return nil, nil
}

func policy(action, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p-" + strings.ToLower(action) + ", namespace: default}\nspec:\n  action: " + action + "\n" + spec
}

const (
	checkout = "spiffe://cluster.local/ns/default/sa/checkout"
	foreign  = "spiffe://cluster.local/ns/foo/sa/bar"
)

// req is an HTTP request to reviews (127.10.0.11:9080) from 127.10.0.1.
func req(method, path, peer string, h http.Header) *authz.Request {
	return &authz.Request{HTTP: true, Method: method, Authority: "reviews:9080", Path: path, Header: h,
		Source: netip.MustParseAddrPort("127.10.0.1:40000"), Dst: netip.MustParseAddrPort("127.10.0.11:9080"), PeerID: peer}
}

// tcpReq is a TCP connection to reviews' port 9080 from 127.10.0.1.
func tcpReq(peer string) *authz.Request {
	return &authz.Request{Source: netip.MustParseAddrPort("127.10.0.1:40000"), Dst: netip.MustParseAddrPort("127.10.0.11:9080"), PeerID: peer}
}

// alice's verified token: issuer https://issuer.example, audience
// payment, presenter mobile, groups [users, banned], realm.role admin.
var alice = &jwtauthn.Result{Tokens: []jwtauthn.Verified{{Issuer: "https://issuer.example", Subject: "alice", Audiences: []string{"payment"},
	Claims: map[string]any{"azp": "mobile", "groups": []any{"users", "banned"}, "realm": map[string]any{"role": "admin"}}}}}

// tdMesh sets the mesh's trust domain to example.org, with the alias
// old.org.
const tdMesh = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    trustDomain: example.org\n    trustDomainAliases: [old.org]\n---\n"

func withJWT(r *authz.Request, jwt *jwtauthn.Result) *authz.Request {
	r.JWT = jwt
	return r
}

// The cases of Istio's authorization builder testdata, end to end from
// YAML through the translator and the proxy's decoder to a decision.
func TestAuthorizationPolicySemantics(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policies string
		req      *authz.Request
		tcp      bool // judge with the TCP-compiled engine
		want     bool
	}{
		{"no policy allows", "", req("GET", "/", "", nil), false, true},
		{"spec {} denies all", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: none}\nspec: {}\n", req("GET", "/", checkout, nil), false, false},
		{"rules [{}] allows all", policy("ALLOW", "  rules: [{}]\n"), req("GET", "/", "", nil), false, true},
		{"principal allowed", policy("ALLOW", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/checkout]}}]}]\n"), req("GET", "/", checkout, nil), false, true},
		{"principal other denied", policy("ALLOW", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/checkout]}}]}]\n"), req("GET", "/", foreign, nil), false, false},
		{"principal plaintext denied", policy("ALLOW", "  rules: [{from: [{source: {principals: [\"*\"]}}]}]\n"), req("GET", "/", "", nil), false, false},
		{"principal prefix", policy("ALLOW", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/*]}}]}]\n"), req("GET", "/", checkout, nil), false, true},
		{"principal suffix", policy("ALLOW", "  rules: [{from: [{source: {principals: [\"*/sa/checkout\"]}}]}]\n"), req("GET", "/", checkout, nil), false, true},
		{"namespace", policy("ALLOW", "  rules: [{from: [{source: {namespaces: [default]}}]}]\n"), req("GET", "/", checkout, nil), false, true},
		{"namespace other", policy("ALLOW", "  rules: [{from: [{source: {namespaces: [default]}}]}]\n"), req("GET", "/", foreign, nil), false, false},
		{"notNamespaces lets plaintext through", policy("ALLOW", "  rules: [{from: [{source: {notNamespaces: [foo]}}]}]\n"), req("GET", "/", "", nil), false, true},
		{"notNamespaces refuses foo over mTLS", policy("ALLOW", "  rules: [{from: [{source: {notNamespaces: [foo]}}]}]\n"), req("GET", "/", foreign, nil), false, false},
		{"DENY namespaces does not stop plaintext", policy("DENY", "  rules: [{from: [{source: {namespaces: [foo]}}]}]\n"), req("GET", "/", "", nil), false, true},
		{"DENY namespaces stops foo", policy("DENY", "  rules: [{from: [{source: {namespaces: [foo]}}]}]\n"), req("GET", "/", foreign, nil), false, false},
		{"serviceAccounts", policy("ALLOW", "  rules: [{from: [{source: {serviceAccounts: [checkout]}}]}]\n"), req("GET", "/", checkout, nil), false, true},
		{"serviceAccounts other namespace", policy("ALLOW", "  rules: [{from: [{source: {serviceAccounts: [checkout]}}]}]\n"), req("GET", "/", "spiffe://cluster.local/ns/foo/sa/checkout", nil), false, false},
		{"ipBlocks", policy("ALLOW", "  rules: [{from: [{source: {ipBlocks: [127.10.0.0/24]}}]}]\n"), req("GET", "/", "", nil), false, true},
		{"notIpBlocks", policy("ALLOW", "  rules: [{from: [{source: {notIpBlocks: [127.10.0.1]}}]}]\n"), req("GET", "/", "", nil), false, false},
		{"remoteIpBlocks from X-Forwarded-For", policy("ALLOW", "  rules: [{from: [{source: {remoteIpBlocks: [10.0.0.0/8]}}]}]\n"), req("GET", "/", "", http.Header{"X-Forwarded-For": {"192.0.2.1, 10.1.2.3"}}), false, false},
		{"path exact", policy("ALLOW", "  rules: [{to: [{operation: {paths: [/info]}}]}]\n"), req("GET", "/info?x=1", "", nil), false, true},
		{"path exact other", policy("ALLOW", "  rules: [{to: [{operation: {paths: [/info]}}]}]\n"), req("GET", "/info/x", "", nil), false, false},
		{"path prefix", policy("ALLOW", "  rules: [{to: [{operation: {paths: [/api/*]}}]}]\n"), req("GET", "/api/v1", "", nil), false, true},
		{"path suffix", policy("ALLOW", "  rules: [{to: [{operation: {paths: [\"*.png\"]}}]}]\n"), req("GET", "/a/b.png", "", nil), false, true},
		{"path template {*}", policy("ALLOW", "  rules: [{to: [{operation: {paths: [\"/items/{*}/detail\"]}}]}]\n"), req("GET", "/items/42/detail?x", "", nil), false, true},
		{"path template {*} is one segment", policy("ALLOW", "  rules: [{to: [{operation: {paths: [\"/items/{*}/detail\"]}}]}]\n"), req("GET", "/items/4/2/detail", "", nil), false, false},
		{"path template {**}", policy("DENY", "  rules: [{to: [{operation: {paths: [\"/admin/{**}\"]}}]}]\n"), req("GET", "/admin/a/b", "", nil), false, false},
		{"notPaths", policy("ALLOW", "  rules: [{to: [{operation: {notPaths: [/admin*]}}]}]\n"), req("GET", "/admin/x", "", nil), false, false},
		{"methods", policy("ALLOW", "  rules: [{to: [{operation: {methods: [GET, HEAD]}}]}]\n"), req("POST", "/", "", nil), false, false},
		{"notMethods", policy("ALLOW", "  rules: [{to: [{operation: {notMethods: [POST]}}]}]\n"), req("GET", "/", "", nil), false, true},
		{"ports (the target port)", policy("ALLOW", "  rules: [{to: [{operation: {ports: [\"9080\"]}}]}]\n"), req("GET", "/", "", nil), false, true},
		{"notPorts", policy("ALLOW", "  rules: [{to: [{operation: {notPorts: [\"9080\"]}}]}]\n"), req("GET", "/", "", nil), false, false},
		{"hosts ignore case", policy("ALLOW", "  rules: [{to: [{operation: {hosts: [REVIEWS:9080]}}]}]\n"), req("GET", "/", "", nil), false, true},
		{"notHosts", policy("ALLOW", "  rules: [{to: [{operation: {notHosts: [\"reviews*\"]}}]}]\n"), req("GET", "/", "", nil), false, false},
		{"when header", policy("ALLOW", "  rules: [{when: [{key: \"request.headers[x-user]\", values: [alice]}]}]\n"), req("GET", "/", "", http.Header{"X-User": {"bob", "alice"}}), false, true},
		{"when header absent", policy("ALLOW", "  rules: [{when: [{key: \"request.headers[x-user]\", values: [alice]}]}]\n"), req("GET", "/", "", nil), false, false},
		{"when notValues", policy("ALLOW", "  rules: [{when: [{key: \"request.headers[x-user]\", notValues: [\"adm*\"]}]}]\n"), req("GET", "/", "", http.Header{"X-User": {"admin"}}), false, false},
		{"when source.ip", policy("ALLOW", "  rules: [{when: [{key: source.ip, values: [127.10.0.1]}]}]\n"), req("GET", "/", "", nil), false, true},
		{"when source.namespace", policy("ALLOW", "  rules: [{when: [{key: source.namespace, values: [foo]}]}]\n"), req("GET", "/", foreign, nil), false, true},
		{"when source.principal", policy("ALLOW", "  rules: [{when: [{key: source.principal, values: [cluster.local/ns/foo/sa/bar]}]}]\n"), req("GET", "/", checkout, nil), false, false},
		{"when destination.port", policy("ALLOW", "  rules: [{when: [{key: destination.port, values: [\"9080\"]}]}]\n"), req("GET", "/", "", nil), false, true},
		{"when destination.ip", policy("ALLOW", "  rules: [{when: [{key: destination.ip, values: [10.0.0.0/8]}]}]\n"), req("GET", "/", "", nil), false, false},
		{"DENY overrides ALLOW", policy("ALLOW", "  rules: [{}]\n") + "---\n" + policy("DENY", "  rules: [{to: [{operation: {paths: [/admin]}}]}]\n"), req("GET", "/admin", checkout, nil), false, false},
		{"DENY leaves the rest to ALLOW", policy("ALLOW", "  rules: [{}]\n") + "---\n" + policy("DENY", "  rules: [{to: [{operation: {paths: [/admin]}}]}]\n"), req("GET", "/x", checkout, nil), false, true},
		{"AUDIT allows", policy("AUDIT", "  rules: [{}]\n"), req("GET", "/", "", nil), false, true},
		{"requestPrincipals never match without JWT", policy("ALLOW", "  rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]\n"), req("GET", "/", checkout, nil), false, false},
		{"DENY notRequestPrincipals refuses requests without JWT", policy("DENY", "  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]\n"), req("GET", "/", checkout, nil), false, false},
		{"CUSTOM fails closed", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext}\nspec:\n  action: CUSTOM\n  provider: {name: opa}\n  rules: [{to: [{operation: {paths: [/x]}}]}]\n", req("GET", "/x", checkout, nil), false, false},
		{"policy for other workloads", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: other}\nspec:\n  selector: {matchLabels: {app: ratings}}\n", req("GET", "/", "", nil), false, true},
		{"mesh-wide in the root namespace", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: none, namespace: istio-system}\nspec: {}\n", req("GET", "/", "", nil), false, false},
		{"another namespace's policy", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: none, namespace: foo}\nspec: {}\n", req("GET", "/", "", nil), false, true},
		{"requestPrincipals with a token", policy("ALLOW", "  rules: [{from: [{source: {requestPrincipals: [\"https://issuer.example/*\"]}}]}]\n"), withJWT(req("GET", "/", "", nil), alice), false, true},
		{"requestPrincipals another issuer", policy("ALLOW", "  rules: [{from: [{source: {requestPrincipals: [\"https://other.example/*\"]}}]}]\n"), withJWT(req("GET", "/", "", nil), alice), false, false},
		{"DENY notRequestPrincipals lets a token through", policy("DENY", "  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]\n"), withJWT(req("GET", "/", "", nil), alice), false, true},
		{"when request.auth.audiences", policy("ALLOW", "  rules: [{when: [{key: request.auth.audiences, values: [payment]}]}]\n"), withJWT(req("GET", "/", "", nil), alice), false, true},
		{"when request.auth.presenter", policy("ALLOW", "  rules: [{when: [{key: request.auth.presenter, values: [web]}]}]\n"), withJWT(req("GET", "/", "", nil), alice), false, false},
		{"when nested claim", policy("ALLOW", "  rules: [{when: [{key: \"request.auth.claims[realm][role]\", values: [\"adm*\"]}]}]\n"), withJWT(req("GET", "/", "", nil), alice), false, true},
		{"when list claim notValues", policy("ALLOW", "  rules: [{when: [{key: \"request.auth.claims[groups]\", notValues: [banned]}]}]\n"), withJWT(req("GET", "/", "", nil), alice), false, false},
		{"cluster.local stands for the mesh's trust domain", tdMesh + policy("ALLOW", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/checkout]}}]}]\n"), req("GET", "/", "spiffe://example.org/ns/default/sa/checkout", nil), false, true},
		{"and its aliases", tdMesh + policy("ALLOW", "  rules: [{from: [{source: {principals: [example.org/ns/default/sa/checkout]}}]}]\n"), req("GET", "/", "spiffe://old.org/ns/default/sa/checkout", nil), false, true},
		{"another trust domain stays as written", tdMesh + policy("ALLOW", "  rules: [{from: [{source: {principals: [other.org/ns/default/sa/checkout]}}]}]\n"), req("GET", "/", "spiffe://example.org/ns/default/sa/checkout", nil), false, false},
		{"trustDomains with aliases", tdMesh + policy("ALLOW", "  rules: [{from: [{source: {trustDomains: [example.org]}}]}]\n"), req("GET", "/", "spiffe://old.org/ns/foo/sa/bar", nil), false, true},
		{"trustDomains wildcard", policy("ALLOW", "  rules: [{from: [{source: {trustDomains: [\"*.local\"]}}]}]\n"), req("GET", "/", checkout, nil), false, true},
		{"notTrustDomains", policy("ALLOW", "  rules: [{from: [{source: {notTrustDomains: [cluster.local]}}]}]\n"), req("GET", "/", checkout, nil), false, false},
		// TCP: an ALLOW rule with HTTP fields is dropped; a DENY rule
		// keeps its TCP fields only.
		{"TCP ALLOW with paths allows nothing", policy("ALLOW", "  rules: [{to: [{operation: {paths: [/info]}}]}]\n"), tcpReq(checkout), true, false},
		{"TCP ALLOW principals", policy("ALLOW", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/checkout]}}]}]\n"), tcpReq(checkout), true, true},
		{"TCP DENY with methods denies all from the source", policy("DENY", "  rules: [{from: [{source: {namespaces: [default]}}], to: [{operation: {methods: [POST]}}]}]\n"), tcpReq(checkout), true, false},
		{"TCP DENY other source", policy("DENY", "  rules: [{from: [{source: {namespaces: [default]}}], to: [{operation: {methods: [POST]}}]}]\n"), tcpReq(foreign), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, tcp := authzEngines(t, tc.policies)
			e := h
			if tc.tcp {
				e = tcp
			}
			if got := e.Check(tc.req).Allowed; got != tc.want {
				t.Errorf("allowed = %v, want %v", got, tc.want)
			}
		})
	}
}

// A CUSTOM policy whose provider is an envoyExtAuthzHttp service becomes
// a shadow RBAC filter and an ext_authz filter the proxy decodes: the
// authorizer is asked about the requests the CUSTOM rules select only,
// on the provider service's outbound cluster, with the provider's
// settings. Without the provider the rules deny.
func TestCustomAuthorizationProvider(t *testing.T) {
	const mesh = `apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: default}
spec:
  selector: {app: ext-authz}
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: my-authz
      envoyExtAuthzHttp: {service: ext-authz.default.svc.cluster.local, port: 8000, timeout: 2s, failOpen: true, includeRequestHeadersInCheck: [x-user]}
---
`
	custom := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext}\nspec:\n  action: CUSTOM\n  provider: {name: my-authz}\n  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]\n"
	r := translate.Local(world(t, "testdata/mesh", mesh+custom), sidecarProxy, nil)
	var hcm *xdsresource.HTTPConnectionManager
	for _, l := range r.Listeners {
		if l.Name != translate.VirtualInbound {
			continue
		}
		b, _ := proto.Marshal(l)
		dl, err := xdsresource.DecodeListener(b)
		if err != nil {
			t.Fatalf("the proxy refuses virtualInbound: %v", err)
		}
		for _, fc := range dl.FilterChains {
			if fc.DestinationPort == 9080 && fc.HTTP != nil {
				hcm = fc.HTTP
			}
		}
	}
	if hcm == nil || hcm.ExtAuthz == nil {
		t.Fatalf("no ext_authz filter on the HTTP chain: %+v", hcm)
	}
	x := hcm.ExtAuthz
	if x.Cluster != "outbound|8000||ext-authz.default.svc.cluster.local" || x.Timeout != 2*time.Second || !x.FailureModeAllow {
		t.Errorf("ext_authz %+v, want the provider's cluster, 2s timeout, fail open", x)
	}
	e, err := authz.CompileHTTP(hcm.RBAC, hcm.ExtAuthz)
	if err != nil {
		t.Fatal(err)
	}
	if e.External(req("GET", "/admin/x", "", nil)) == nil {
		t.Error("/admin/x is not sent to the authorizer")
	}
	if e.External(req("GET", "/pay", "", nil)) != nil {
		t.Error("/pay is sent to the authorizer; no CUSTOM rule selects it")
	}
	if !e.Check(req("GET", "/admin/x", "", nil)).Allowed {
		t.Error("the RBAC filters refuse /admin/x themselves; the authorizer decides it")
	}

	// The provider missing: the CUSTOM rules deny.
	h, _ := authzEngines(t, custom)
	if h.Check(req("GET", "/admin/x", "", nil)).Allowed || !h.Check(req("GET", "/pay", "", nil)).Allowed {
		t.Error("without its provider, a CUSTOM policy must refuse what its rules select, and only that")
	}
}

// includeRequestBodyInCheck becomes ext_authz's with_request_body, which
// the proxy decodes; maxRequestBytes 0, which Envoy refuses, leaves the
// CUSTOM rules denying instead.
func TestCustomAuthorizationProviderBody(t *testing.T) {
	mesh := func(body string) string {
		return `apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: default}
spec:
  selector: {app: ext-authz}
  ports: [{name: grpc, port: 9000}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: my-authz
      envoyExtAuthzGrpc: {service: ext-authz.default.svc.cluster.local, port: 9000, includeRequestBodyInCheck: ` + body + `}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`
	}
	inbound := func(cfg string) *xdsresource.HTTPConnectionManager {
		t.Helper()
		r := translate.Local(world(t, "testdata/mesh", cfg), sidecarProxy, nil)
		for _, l := range r.Listeners {
			if l.Name != translate.VirtualInbound {
				continue
			}
			b, _ := proto.Marshal(l)
			dl, err := xdsresource.DecodeListener(b)
			if err != nil {
				t.Fatalf("the proxy refuses virtualInbound: %v", err)
			}
			for _, fc := range dl.FilterChains {
				if fc.DestinationPort == 9080 && fc.HTTP != nil {
					return fc.HTTP
				}
			}
		}
		t.Fatal("no HTTP chain for 9080")
		return nil
	}
	hcm := inbound(mesh("{maxRequestBytes: 16, allowPartialMessage: true, packAsBytes: true}"))
	if hcm.ExtAuthz == nil || hcm.ExtAuthz.Body == nil || *hcm.ExtAuthz.Body != (xdsresource.BodySettings{MaxBytes: 16, AllowPartial: true, PackAsBytes: true}) {
		t.Fatalf("ext_authz %+v, want the body settings 16 bytes, partial, as bytes", hcm.ExtAuthz)
	}
	hcm = inbound(mesh("{allowPartialMessage: true}"))
	if hcm.ExtAuthz != nil {
		t.Fatalf("ext_authz %+v with maxRequestBytes 0, want none (the rules deny)", hcm.ExtAuthz)
	}
	e, err := authz.CompileHTTP(hcm.RBAC, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Check(req("GET", "/admin/x", "", nil)).Allowed || !e.Check(req("GET", "/pay", "", nil)).Allowed {
		t.Error("with maxRequestBytes 0, the CUSTOM rules must refuse what they select, and only that")
	}
}

package sidecar_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/proxy/tunnel"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// authzIdentity gives a sidecar the certificate of service account sa in
// namespace default, from ca.
func authzIdentity(t testing.TB, ca *certtest.CA, sa string) func(*sidecar.Options) {
	src := certs.NewStatic(ca.Leaf(t, certtest.SPIFFE("default", sa), certtest.LeafOptions{}), ca.Pool())
	return func(o *sidecar.Options) { o.Identity = src }
}

// paymentServiceConfig is payment-service (http 9080) with its one
// endpoint, base.2, running a sidecar as service account payment-service,
// and db (tcp 9000) at base.5 as service account db; then extra.
func paymentServiceConfig(base, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: payment-service}
spec:
  selector: {app: payment-service}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: payment-service}
spec: {address: %[1]s.2, serviceAccount: payment-service, labels: {app: payment-service, security.istio.io/tlsMode: istio}}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp-db, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db}
spec: {address: %[1]s.5, serviceAccount: db, labels: {app: db, security.istio.io/tlsMode: istio}}
---
%[2]s`, base, extra)
}

// awaitStatus waits until GET url through c answers want: the policy
// written last has reached the sidecars.
func awaitStatus(t *testing.T, c *http.Client, url string, want int) {
	t.Helper()
	meshtest.Eventually(t, 10*time.Second, func() string {
		if code, flags, body, _ := get(c, url, nil); code != want {
			return fmt.Sprintf("GET %s: %d %s %q, want %d", url, code, flags, body, want)
		}
		return ""
	})
}

// countingBackend is payment-service's app: it counts the requests it
// sees, so a test can tell a denied request never reached it.
func countingBackend(m *meshtest.Mesh, addr string) *atomic.Int64 {
	var n atomic.Int64
	m.Backend(addr, "payment", func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "payment")
	})
	return &n
}

// The user's example, examples/shop/payment-policy.yaml (the seed example
// unchanged), through real sidecars with mTLS identities: checkout-service
// and refund-service get payment-service's 200; sleep gets Envoy's 403
// "RBAC: access denied" from payment's sidecar and the app never sees the
// request. Editing the policy to admit sleep takes effect on the next
// requests, and a DENY policy added beside it refuses /admin even to
// checkout (DENY before ALLOW).
func TestAuthzPaymentPolicy(t *testing.T) {
	leak.Check(t)
	const base = "127.77.150"
	policy, err := os.ReadFile("../../../examples/shop/payment-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentServiceConfig(base, ""), meshtest.WithFile("payment-policy.yaml", string(policy)))
	seen := countingBackend(m, base+".2:9080")
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"}, authzIdentity(t, ca, "payment-service"))
	checkout := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	refund := m.Sidecar("refund", base+".3", nil, authzIdentity(t, ca, "refund-service"))
	sleep := m.Sidecar("sleep", base+".4", nil, authzIdentity(t, ca, "sleep"))
	m.WaitSynced()

	for _, p := range []*meshtest.Pod{checkout, refund} {
		c := p.Client()
		if code, flags, body, _ := get(c, "http://payment-service:9080/pay", nil); code != 200 || body != "payment" {
			t.Errorf("%s: %d %s %q, want payment's 200", p.Name, code, flags, body)
		}
		c.CloseIdleConnections()
	}
	before := seen.Load()
	sc := sleep.Client()
	defer sc.CloseIdleConnections()
	code, _, body, h := get(sc, "http://payment-service:9080/pay", nil)
	if code != http.StatusForbidden || body != "RBAC: access denied" {
		t.Errorf("sleep: %d %q, want 403 %q", code, body, "RBAC: access denied")
	}
	if ct := h.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("sleep's 403 has Content-Type %q, want text/plain (Envoy's local reply)", ct)
	}
	if n := seen.Load(); n != before {
		t.Errorf("payment's app saw %d requests from sleep, want none", n-before)
	}

	// Live: admit sleep too.
	m.Write("payment-policy.yaml", strings.Replace(string(policy), `- "cluster.local/ns/default/sa/refund-service"`,
		"- \"cluster.local/ns/default/sa/refund-service\"\n        - \"cluster.local/ns/default/sa/sleep\"", 1))
	awaitStatus(t, sc, "http://payment-service:9080/pay", http.StatusOK)
	m.WaitSynced()
	if code, flags, body, _ := get(sc, "http://payment-service:9080/pay", nil); code != 200 || body != "payment" {
		t.Errorf("sleep after the policy admits it: %d %s %q, want payment's 200", code, flags, body)
	}

	// DENY comes first.
	m.Write("deny-admin.yaml", `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: payment-service}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`)
	cc := checkout.Client()
	defer cc.CloseIdleConnections()
	awaitStatus(t, cc, "http://payment-service:9080/admin/refunds", http.StatusForbidden)
	m.WaitSynced()
	if code, _, body, _ := get(cc, "http://payment-service:9080/admin/refunds", nil); code != http.StatusForbidden || body != "RBAC: access denied" {
		t.Errorf("checkout to /admin/refunds: %d %q, want 403", code, body)
	}
	if code, _, body, _ := get(cc, "http://payment-service:9080/pay", nil); code != 200 || body != "payment" {
		t.Errorf("checkout to /pay beside the DENY: %d %q, want 200", code, body)
	}

	// A gRPC caller gets PERMISSION_DENIED, as Envoy maps the 403.
	req, _ := http.NewRequest(http.MethodPost, "http://payment-service:9080/admin.Refunds/List", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := cc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if st := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status"); st != "7" {
		t.Errorf("gRPC call denied by the DENY: grpc-status %q (HTTP %d), want 7 (PERMISSION_DENIED)", st, resp.StatusCode)
	}

	// A path whose meaning depends on normalization is normalized first
	// (Istio's default BASE), so it is judged, and refused, as /admin,
	// not as /pay (pathnorm_test.go has the rest).
	before = seen.Load()
	for _, path := range []string{"/pay/../admin/refunds", "/pay/%2e%2e/admin/refunds", "/./admin/refunds"} {
		if got := rawGet(t, checkout, "payment-service:9080", path); !strings.HasPrefix(got, "HTTP/1.1 403 ") {
			t.Errorf("GET %s: %q, want 403", path, firstLine(got))
		}
	}
	if n := seen.Load(); n != before {
		t.Errorf("the app saw %d requests with unnormalized paths, want none", n-before)
	}
}

// rawGet sends GET path (exactly as written) for host through the pod's
// forward proxy and returns the response as read until it closes.
func rawGet(t *testing.T, p *meshtest.Pod, host, path string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.IP.String()+":15001", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET http://%s%s HTTP/1.1\r\nHost: %[1]s\r\nConnection: close\r\n\r\n", host, path)
	b, _ := io.ReadAll(c)
	return string(b)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// A plaintext caller (a sidecar without an identity reaching a workload
// that has none either) compares as an empty identity: an ALLOW on
// principals refuses it, and an ALLOW on notNamespaces [foo] lets it
// through, as in Istio. ipBlocks match the calling pod's address.
func TestAuthzPlaintextIdentity(t *testing.T) {
	leak.Check(t)
	const base = "127.77.151"
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: payment-service}
spec:
  selector: {app: payment-service}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: payment-service}
spec: {address: %s.2, labels: {app: payment-service, security.istio.io/tlsMode: istio}}
`, base)
	policy := func(source string) string {
		return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  selector: {matchLabels: {app: payment-service}}
  rules: [{from: [{source: ` + source + `}]}]
`
	}
	m := meshtest.New(t, cfg, meshtest.WithFile("p.yaml", policy(`{principals: ["*"]}`)))
	seen := countingBackend(m, base+".2:9080")
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"})
	client := m.Sidecar("client", base+".1", nil)
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		source string
		want   int
	}{
		{`{principals: ["*"]}`, http.StatusForbidden},
		{`{notNamespaces: [foo]}`, http.StatusOK},
		{`{namespaces: [default]}`, http.StatusForbidden},
		{`{ipBlocks: ["` + base + `.0/24"]}`, http.StatusOK},
		{`{notIpBlocks: ["` + base + `.1"]}`, http.StatusForbidden},
	} {
		m.Write("p.yaml", policy(tc.source))
		awaitStatus(t, c, "http://payment-service:9080/", tc.want)
		m.WaitSynced()
		before := seen.Load()
		code, _, body, _ := get(c, "http://payment-service:9080/", nil)
		if code != tc.want {
			t.Errorf("source %s: %d %q, want %d", tc.source, code, body, tc.want)
		}
		if reached := seen.Load() != before; reached != (tc.want == http.StatusOK) {
			t.Errorf("source %s: the app saw the request: %v", tc.source, reached)
		}
	}
}

// echoApp is a TCP app that answers each line it reads with the same
// line, counting its connections.
func echoApp(t *testing.T, addr string) *atomic.Int64 {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, line)
				}
			}()
		}
	}()
	return &n
}

// tcpEcho sends one line to target through the pod's forward proxy
// (CONNECT) and returns what came back before the connection ended or 5s
// passed.
func tcpEcho(t *testing.T, p *meshtest.Pod, target string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.IP.String()+":15001", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\nhello\n", target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "no CONNECT answer: " + err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	line, _ := br.ReadString('\n')
	return line
}

// A TCP service under an ALLOW on principals: checkout's connection is
// proxied (its line echoes back), sleep's is closed at accept by db's
// sidecar and the app never sees a connection.
func TestAuthzTCPConnectionClosed(t *testing.T) {
	leak.Check(t)
	const base = "127.77.152"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentServiceConfig(base, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/checkout-service]}}]}]
`))
	conns := echoApp(t, base+".5:9000")
	m.Sidecar("db", base+".5", map[string]string{"app": "db"}, authzIdentity(t, ca, "db"))
	checkout := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	sleep := m.Sidecar("sleep", base+".4", nil, authzIdentity(t, ca, "sleep"))
	m.WaitSynced()

	if got := tcpEcho(t, checkout, "db:9000"); got != "hello\n" {
		t.Fatalf("checkout: got %q, want the echo", got)
	}
	before := conns.Load()
	if got := tcpEcho(t, sleep, "db:9000"); got == "hello\n" {
		t.Errorf("sleep's connection was proxied (%q), want it closed", got)
	}
	if n := conns.Load(); n != before {
		t.Errorf("db's app accepted %d connections from sleep, want none", n-before)
	}
}

// Istio's "require a JWT" recipe, through real sidecars: a
// RequestAuthentication on payment and an AuthorizationPolicy allowing
// requestPrincipals ["*"] (and, for /admin, only alice with the claim
// group admins). A request without a token gets 403 and never reaches the
// app; a valid token gets 200; /admin needs alice's admin claim.
func TestAuthzRequestPrincipals(t *testing.T) {
	leak.Check(t)
	const base = "127.77.153"
	iss := newJWTIssuer(t, "k1")
	policy := requestAuthn("payment", fmt.Sprintf("issuer: https://auth.example\njwks: '%s'", iss.jwks())) + `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt}
spec:
  selector: {matchLabels: {app: payment}}
  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {notPaths: ["/admin*"]}}]
  - from: [{source: {requestPrincipals: ["https://auth.example/alice"]}}]
    to: [{operation: {paths: ["/admin*"]}}]
    when: [{key: "request.auth.claims[groups]", values: [admins]}]
`
	_, sleep, seen := jwtMesh(t, base, policy)
	c := sleep.Client()
	defer c.CloseIdleConnections()
	token := func(sub string, groups ...string) map[string]string {
		tok, _ := iss.token(t, map[string]any{"iss": "https://auth.example", "sub": sub, "groups": groups, "exp": time.Now().Add(time.Hour).Unix()})
		return map[string]string{"Authorization": "Bearer " + tok}
	}
	before := seen.Load()
	if code, _, body, _ := get(c, "http://payment:9080/pay", nil); code != http.StatusForbidden || body != "RBAC: access denied" {
		t.Errorf("no token: %d %q, want 403", code, body)
	}
	if n := seen.Load(); n != before {
		t.Errorf("the app saw the request without a token")
	}
	for _, tc := range []struct {
		name, path string
		h          map[string]string
		want       int
	}{
		{"bob's token", "/pay", token("bob"), 200},
		{"bob to /admin", "/admin/x", token("bob", "admins"), 403},
		{"alice without the claim to /admin", "/admin/x", token("alice", "users"), 403},
		{"alice, admins, to /admin", "/admin/x", token("alice", "users", "admins"), 200},
	} {
		if code, _, body, _ := get(c, "http://payment:9080"+tc.path, tc.h); code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, code, body, tc.want)
		}
	}
}

// A CUSTOM AuthorizationPolicy with an envoyExtAuthzHttp provider (a
// small authorizer on loopback), through real sidecars: requests its
// rules do not select never reach the authorizer; for /admin* the
// authorizer decides: alice (by the x-user header it is sent) passes,
// with the header it adds reaching the app; bob gets the authorizer's own
// 403, body and allowed header, and the app never sees him. With the
// authorizer gone the sidecar answers statusOnError.
func TestAuthzCustomExternalAuthorizer(t *testing.T) {
	leak.Check(t)
	const base = "127.77.154"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentServiceConfig(base, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: ext-authz}
spec:
  selector: {app: ext-authz}
  ports: [{name: http, port: 8000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ext-authz}
spec: {address: %s.9, labels: {app: ext-authz}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: my-authz
      envoyExtAuthzHttp:
        service: ext-authz.default.svc.cluster.local
        port: 8000
        pathPrefix: /check
        statusOnError: "503"
        includeRequestHeadersInCheck: [x-user]
        headersToUpstreamOnAllow: [x-authz-user]
        headersToDownstreamOnDeny: [x-authz-reason]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  selector: {matchLabels: {app: payment-service}}
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`, base)))
	var asked atomic.Int64
	var lastCheck atomic.Value
	authorizer := meshtest.Backend(t, base+".9:8000", "ext-authz", func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		lastCheck.Store(r.Method + " " + r.URL.RequestURI() + " host=" + r.Host + " cookie=" + r.Header.Get("Cookie"))
		if r.Header.Get("X-User") == "alice" {
			w.Header().Set("X-Authz-User", "alice")
			return
		}
		w.Header().Set("X-Authz-Reason", "not alice")
		w.Header().Set("X-Other", "internal")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "denied by authz")
	})
	var seen atomic.Int64
	m.Backend(base+".2:9080", "payment", func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		w.Header().Set("X-Seen-Authz-User", r.Header.Get("X-Authz-User"))
		io.WriteString(w, "payment")
	})
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"}, authzIdentity(t, ca, "payment-service"))
	client := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()

	if code, _, body, _ := get(c, "http://payment-service:9080/pay", nil); code != 200 || body != "payment" {
		t.Errorf("/pay: %d %q, want 200", code, body)
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the authorizer was asked %d times about a request no CUSTOM rule selects", n)
	}
	code, _, body, h := get(c, "http://payment-service:9080/admin/x?y=1", map[string]string{"X-User": "alice", "Cookie": "secret"})
	if code != 200 || body != "payment" || h.Get("X-Seen-Authz-User") != "alice" {
		t.Errorf("alice to /admin: %d %q, app saw X-Authz-User %q; want 200 and alice", code, body, h.Get("X-Seen-Authz-User"))
	}
	if got, want := lastCheck.Load(), "GET /check/admin/x?y=1 host=payment-service:9080 cookie="; got != want {
		t.Errorf("the authorizer saw %q, want %q (path prefixed, Host kept, headers not listed left out)", got, want)
	}
	before := seen.Load()
	code, _, body, h = get(c, "http://payment-service:9080/admin/x", map[string]string{"X-User": "bob"})
	if code != http.StatusForbidden || body != "denied by authz" || h.Get("X-Authz-Reason") != "not alice" || h.Get("X-Other") != "" {
		t.Errorf("bob to /admin: %d %q reason %q other %q; want the authorizer's 403, body and reason only", code, body, h.Get("X-Authz-Reason"), h.Get("X-Other"))
	}
	if seen.Load() != before {
		t.Error("the app saw bob's request")
	}

	authorizer.Close()
	if code, _, _, _ := get(c, "http://payment-service:9080/admin/x", map[string]string{"X-User": "alice"}); code != http.StatusServiceUnavailable {
		t.Errorf("authorizer down: %d, want statusOnError 503", code)
	}
}

// Non-HTTP bytes on a port whose protocol is not declared (served as
// HTTP when it speaks HTTP) are judged by the workload's policies
// compiled for TCP, as Istio's sniffed TCP chain is: an ALLOW on
// principals admits checkout's raw TCP and closes sleep's; an ALLOW whose
// only rule names paths allows no TCP at all.
func TestAuthzSniffedTCPOnUndeclaredPort(t *testing.T) {
	leak.Check(t)
	const base = "127.77.155"
	ca := certtest.NewCA(t)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: raw}
spec:
  selector: {app: raw}
  ports: [{name: stream, port: 7000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: raw}
spec: {address: %s.5, serviceAccount: raw, labels: {app: raw, security.istio.io/tlsMode: istio}}
`, base)
	policy := func(rule string) string {
		return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: raw}\nspec:\n  selector: {matchLabels: {app: raw}}\n  rules: [" + rule + "]\n"
	}
	m := meshtest.New(t, cfg, meshtest.WithFile("p.yaml", policy("{from: [{source: {principals: [cluster.local/ns/default/sa/checkout-service]}}]}")))
	conns := echoApp(t, base+".5:7000")
	m.Sidecar("raw", base+".5", map[string]string{"app": "raw"}, authzIdentity(t, ca, "raw"))
	checkout := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	sleep := m.Sidecar("sleep", base+".4", nil, authzIdentity(t, ca, "sleep"))
	m.WaitSynced()

	if got := tcpEcho(t, checkout, "raw:7000"); got != "hello\n" {
		t.Fatalf("checkout: got %q, want the echo", got)
	}
	before := conns.Load()
	if got := tcpEcho(t, sleep, "raw:7000"); got == "hello\n" {
		t.Errorf("sleep's raw TCP was proxied, want it closed")
	}
	if conns.Load() != before {
		t.Error("the app accepted sleep's connection")
	}

	m.Write("p.yaml", policy("{to: [{operation: {paths: [/x]}}]}"))
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := tcpEcho(t, checkout, "raw:7000"); got == "hello\n" {
			return "checkout's raw TCP still passes an ALLOW with only an HTTP rule"
		}
		return ""
	})
}

// grpcAuthorizer is a grpc-go envoy.service.auth.v3 Authorization server:
// it allows requests whose x-user header is alice (adding x-authz-user)
// and denies the others with 401, a body and a header.
type grpcAuthorizer struct {
	authv3.UnimplementedAuthorizationServer
	asked atomic.Int64
	last  atomic.Pointer[authv3.CheckRequest]
}

func (g *grpcAuthorizer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	g.asked.Add(1)
	g.last.Store(req)
	if req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-user"] == "alice" {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-authz-user", Value: "alice"}}}}}}, nil
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
		Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-authz-reason", Value: "not alice"}}},
		Body:    "denied by grpc authz"}}}, nil
}

// The same CUSTOM policy with an envoyExtAuthzGrpc provider, a real
// grpc-go authorization server: alice passes with the header it adds, bob
// gets its 401, body and header; the authorizer was told the request's
// method, path and the caller's SPIFFE ID.
func TestAuthzCustomGRPCAuthorizer(t *testing.T) {
	leak.Check(t)
	const base = "127.77.156"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentServiceConfig(base, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: authz-grpc}
spec:
  selector: {app: authz-grpc}
  ports: [{name: grpc, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: authz-grpc}
spec: {address: %s.9, labels: {app: authz-grpc}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: grpc-authz
      envoyExtAuthzGrpc: {service: authz-grpc.default.svc.cluster.local, port: 9000}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  selector: {matchLabels: {app: payment-service}}
  action: CUSTOM
  provider: {name: grpc-authz}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`, base)))
	ln, err := net.Listen("tcp", base+".9:9000")
	if err != nil {
		t.Fatal(err)
	}
	g := &grpcAuthorizer{}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, g)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	var seen atomic.Int64
	m.Backend(base+".2:9080", "payment", func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		w.Header().Set("X-Seen-Authz-User", r.Header.Get("X-Authz-User"))
		io.WriteString(w, "payment")
	})
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"}, authzIdentity(t, ca, "payment-service"))
	client := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()

	if code, _, _, _ := get(c, "http://payment-service:9080/pay", nil); code != 200 || g.asked.Load() != 0 {
		t.Errorf("/pay: %d, authorizer asked %d times; want 200 without asking", code, g.asked.Load())
	}
	code, _, body, h := get(c, "http://payment-service:9080/admin/x?y=1", map[string]string{"X-User": "alice"})
	if code != 200 || body != "payment" || h.Get("X-Seen-Authz-User") != "alice" {
		t.Errorf("alice: %d %q, app saw X-Authz-User %q; want 200 and alice", code, body, h.Get("X-Seen-Authz-User"))
	}
	if req := g.last.Load(); req != nil {
		a := req.GetAttributes()
		if got := a.GetRequest().GetHttp(); got.GetMethod() != "GET" || got.GetPath() != "/admin/x" || got.GetQuery() != "y=1" || got.GetHost() != "payment-service:9080" {
			t.Errorf("the authorizer saw %s %s ? %s host %s", got.GetMethod(), got.GetPath(), got.GetQuery(), got.GetHost())
		}
		if p := a.GetSource().GetPrincipal(); p != certtest.SPIFFE("default", "checkout-service") {
			t.Errorf("the authorizer saw source principal %q, want checkout's SPIFFE ID", p)
		}
	} else {
		t.Error("the authorizer was not asked about alice's request")
	}
	before := seen.Load()
	code, _, body, h = get(c, "http://payment-service:9080/admin/x", map[string]string{"X-User": "bob"})
	if code != http.StatusUnauthorized || body != "denied by grpc authz" || h.Get("X-Authz-Reason") != "not alice" {
		t.Errorf("bob: %d %q reason %q; want the authorizer's 401, body and header", code, body, h.Get("X-Authz-Reason"))
	}
	if seen.Load() != before {
		t.Error("the app saw bob's request")
	}
}

// A caller reaching the workload through an HTTP/2 (HBONE) tunnel stream
// is judged by its own address like one using HTTP/1.1 CONNECT: a DENY
// on ipBlocks stops it, and an ALLOW on them admits it.
func TestAuthzSourceThroughH2Tunnel(t *testing.T) {
	leak.Check(t)
	const base = "127.77.157"
	ca := certtest.NewCA(t)
	policy := func(action, block string) string {
		return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ip}\nspec:\n  selector: {matchLabels: {app: payment-service}}\n  action: " + action + "\n  rules: [{from: [{source: {ipBlocks: [\"" + block + "\"]}}]}]\n"
	}
	m := meshtest.New(t, paymentServiceConfig(base, ""), meshtest.WithFile("p.yaml", policy("DENY", base+".1/32")))
	m.Backend(base+".2:9080", "payment", nil)
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"}, authzIdentity(t, ca, "payment-service"))
	m.WaitSynced()
	src := certs.NewStatic(ca.Leaf(t, certtest.SPIFFE("default", "checkout-service"), certtest.LeafOptions{}), ca.Pool())
	d := &tunnel.Dialer{Source: netip.MustParseAddr(base + ".1"), TLSConfig: certs.ClientConfig(src, func(string) bool { return true })}
	defer d.Close()
	get := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := d.Dial(ctx, netip.MustParseAddrPort(base+".2:15008"), base+".2:9080", nil)
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /pay HTTP/1.1\r\nHost: payment-service:9080\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		return firstLine(string(b))
	}
	if got := get(); got != "HTTP/1.1 403 Forbidden" {
		t.Errorf("DENY on the caller's address through an h2 tunnel: %q, want 403", got)
	}
	m.Write("p.yaml", policy("ALLOW", base+".1/32"))
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := get(); got != "HTTP/1.1 200 OK" {
			return "ALLOW on the caller's address through an h2 tunnel: " + got
		}
		return ""
	})
}

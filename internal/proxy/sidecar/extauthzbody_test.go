package sidecar_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// bodyAuthzConfig is payment-service with a CUSTOM policy on /admin*
// naming provider my-authz, served at base.9:port by service authz
// (protocol proto: http or grpc).
func bodyAuthzConfig(base, proto string, port int) string {
	return paymentServiceConfig(base, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: authz}
spec:
  selector: {app: authz}
  ports: [{name: %[3]s, port: %[2]d}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: authz}
spec: {address: %[1]s.9, labels: {app: authz}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  selector: {matchLabels: {app: payment-service}}
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`, base, port, proto))
}

// meshWithProvider is the MeshConfig with one extension provider.
func meshWithProvider(provider string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    extensionProviders:\n    - name: my-authz\n      " + provider + "\n"
}

// post sends body to url through c.
func post(c *http.Client, url, body string, h map[string]string) (int, string, http.Header) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// bodyEchoApp is payment's app: it answers with the body it received,
// and counts requests.
func bodyEchoApp(m *meshtest.Mesh, addr string) *atomic.Int64 {
	var n atomic.Int64
	m.Backend(addr, "payment", func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "app got "+string(b))
	})
	return &n
}

// An envoyExtAuthzHttp provider with includeRequestBodyInCheck, as
// Envoy's ext_authz with_request_body: the authorizer is sent the body
// (it allows bodies saying "allow") with x-envoy-auth-partial-body:
// false, and the app then receives the whole body; a body past
// maxRequestBytes is Envoy's 413 before anyone is asked; with
// allowPartialMessage the authorizer gets its first maxRequestBytes,
// marked partial, and the app still the whole body.
func TestAuthzCustomHTTPRequestBody(t *testing.T) {
	leak.Check(t)
	const base = "127.93.14"
	ca := certtest.NewCA(t)
	provider := func(partial bool) string {
		return fmt.Sprintf("envoyExtAuthzHttp: {service: authz.default.svc.cluster.local, port: 8000, includeRequestBodyInCheck: {maxRequestBytes: 16, allowPartialMessage: %v}}", partial)
	}
	m := meshtest.New(t, bodyAuthzConfig(base, "http", 8000), meshtest.WithFile("meshconfig.yaml", meshWithProvider(provider(false))))
	var asked atomic.Int64
	var last atomic.Value
	meshtest.Backend(t, base+".9:8000", "authz", func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		b, _ := io.ReadAll(r.Body)
		last.Store(fmt.Sprintf("%s body=%q partial=%s", r.Method, b, r.Header.Get("X-Envoy-Auth-Partial-Body")))
		if !strings.HasPrefix(string(b), "allow") {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "body says no")
		}
	})
	seen := bodyEchoApp(m, base+".2:9080")
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"}, authzIdentity(t, ca, "payment-service"))
	client := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	url := "http://payment-service:9080/admin/x"

	if code, body, _ := post(c, url, "allow me", nil); code != http.StatusOK || body != "app got allow me" {
		t.Errorf("a body the authorizer allows: %d %q, want 200 with the whole body at the app", code, body)
	}
	if got, want := last.Load(), `POST body="allow me" partial=false`; got != want {
		t.Errorf("the authorizer saw %v, want %s", got, want)
	}
	before := seen.Load()
	if code, body, _ := post(c, url, "deny me", nil); code != http.StatusForbidden || body != "body says no" {
		t.Errorf("a body the authorizer refuses: %d %q, want its 403", code, body)
	}
	long := "allow " + strings.Repeat("x", 34) // 40 bytes
	askedBefore := asked.Load()
	if code, body, _ := post(c, url, long, nil); code != http.StatusRequestEntityTooLarge || body != "Payload Too Large" {
		t.Errorf("a body past maxRequestBytes: %d %q, want 413 Payload Too Large", code, body)
	}
	if asked.Load() != askedBefore {
		t.Error("the authorizer was asked about a body past maxRequestBytes")
	}
	if n := seen.Load(); n != before {
		t.Errorf("the app saw %d refused requests", n-before)
	}

	m.Write("meshconfig.yaml", meshWithProvider(provider(true)))
	meshtest.Eventually(t, 10*time.Second, func() string {
		if code, body, _ := post(c, url, long, nil); code != http.StatusOK || body != "app got "+long {
			return fmt.Sprintf("a long body with allowPartialMessage: %d %q, want 200 with the whole body at the app", code, body)
		}
		return ""
	})
	if got, want := last.Load(), `POST body="allow xxxxxxxxxx" partial=true`; got != want {
		t.Errorf("the authorizer saw %v, want %s", got, want)
	}
}

// An envoyExtAuthzGrpc provider with includeRequestBodyInCheck (partial
// messages allowed, packed as bytes): the CheckRequest carries the body's
// first maxRequestBytes in raw_body and x-envoy-auth-partial-body: true,
// and the app receives the whole body after the authorizer allows it.
func TestAuthzCustomGRPCRequestBody(t *testing.T) {
	leak.Check(t)
	const base = "127.93.15"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, bodyAuthzConfig(base, "grpc", 9000), meshtest.WithFile("meshconfig.yaml", meshWithProvider(
		"envoyExtAuthzGrpc: {service: authz.default.svc.cluster.local, port: 9000, includeRequestBodyInCheck: {maxRequestBytes: 8, allowPartialMessage: true, packAsBytes: true}}")))
	ln, err := net.Listen("tcp", base+".9:9000")
	if err != nil {
		t.Fatal(err)
	}
	g := &grpcAuthorizer{}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, g)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	bodyEchoApp(m, base+".2:9080")
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"}, authzIdentity(t, ca, "payment-service"))
	client := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()

	const body = "0123456789abcdef"
	if code, got, _ := post(c, "http://payment-service:9080/admin/x", body, map[string]string{"X-User": "alice"}); code != http.StatusOK || got != "app got "+body {
		t.Errorf("alice with a body: %d %q, want 200 with the whole body at the app", code, got)
	}
	req := g.last.Load()
	if req == nil {
		t.Fatal("the authorizer was not asked")
	}
	h := req.GetAttributes().GetRequest().GetHttp()
	if string(h.GetRawBody()) != "01234567" || h.GetBody() != "" || h.GetHeaders()["x-envoy-auth-partial-body"] != "true" {
		t.Errorf("the authorizer saw raw_body %q body %q partial %q, want raw_body 01234567, no body, partial true", h.GetRawBody(), h.GetBody(), h.GetHeaders()["x-envoy-auth-partial-body"])
	}
	if code, got, _ := post(c, "http://payment-service:9080/admin/x", body, map[string]string{"X-User": "bob"}); code != http.StatusUnauthorized {
		t.Errorf("bob with a body: %d %q, want the authorizer's 401", code, got)
	}
}

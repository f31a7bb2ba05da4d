package sidecar_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// VirtualService delegation through real sidecars (issue 12): a root
// VirtualService hands http routes to delegate VirtualServices, with its
// match merged into theirs, and a delegation that cannot be followed drops
// only its own route, never the port's other services.

// delegateServices are plain HTTP services on port 9080, each with one
// workload at base.N without a sidecar (the client's sidecar connects to
// it directly): name (namespace) -> N.
func delegateServices(base string) string {
	var b strings.Builder
	for _, s := range []struct {
		name, ns string
		n        int
	}{
		{"productpage", "default", 2}, {"canary", "default", 3}, {"backend", "team", 4},
		{"ratings", "default", 5}, {"ratings-v2", "default", 6},
	} {
		fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %[1]s, namespace: %[2]s}
spec: {address: %[3]s.%[4]d, labels: {app: %[1]s}}
---
`, s.name, s.ns, base, s.n)
	}
	return b.String()
}

// delegateMesh starts the services' backends (each answers its name) and
// a client sidecar at base.1 once config is served.
func delegateMesh(t *testing.T, base, config string) (*meshtest.Mesh, *http.Client) {
	t.Helper()
	m := meshtest.New(t, delegateServices(base)+config)
	for name, n := range map[string]int{"productpage": 2, "canary": 3, "team-backend": 4, "ratings": 5, "ratings-v2": 6} {
		meshtest.Backend(t, fmt.Sprintf("%s.%d:9080", base, n), name, nil)
	}
	c := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}).Client()
	t.Cleanup(c.CloseIdleConnections)
	return m, c
}

// answers waits until a request is answered by backend want.
func answers(t *testing.T, c *http.Client, target string, header map[string]string, want string) {
	t.Helper()
	meshtest.Eventually(t, 10*time.Second, func() string {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Sprintf("GET %s %v: %v", target, header, err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Backend"); got != want {
			return fmt.Sprintf("GET %s %v answered %d by %q (flags %q), want %s", target, header, resp.StatusCode, got, resp.Header.Get("X-Trellis-Flags"), want)
		}
		return ""
	})
}

const productpageRoot = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage]
  http:
  - match: [{uri: {prefix: /productpage}}]
    delegate: {name: pp}
  - match: [{uri: {prefix: /team}}]
    delegate: {name: team-routes, namespace: team}
  - match: [{uri: {prefix: /hidden}}]
    delegate: {name: hidden, namespace: team}
  - route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pp}
spec:
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: canary}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: team-routes, namespace: team}
spec:
  http:
  - route: [{destination: {host: backend}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hidden, namespace: team}
spec:
  exportTo: [.]
  http:
  - route: [{destination: {host: backend}}]
`

// The root's prefix and the delegate's header must both match; a delegate
// in another namespace routes to its own namespace's backend; a delegate
// not exported to the root's namespace is not used (its requests fall
// through to the root's last route).
func TestDelegateRouting(t *testing.T) {
	leak.Check(t)
	_, c := delegateMesh(t, "127.78.1", productpageRoot)
	jason := map[string]string{"end-user": "jason"}
	for _, r := range []struct {
		path   string
		header map[string]string
		want   string
	}{
		{"/productpage/x", jason, "canary"},
		{"/productpage/x", nil, "productpage"}, // the delegate's header match is missing
		{"/other", jason, "productpage"},       // the root's prefix is missing
		{"/team/a", nil, "team-backend"},       // backend resolves in team, the delegate's namespace
		{"/hidden/a", nil, "productpage"},      // hidden is exported to team only
	} {
		answers(t, c, "http://productpage:9080"+r.path, r.header, r.want)
	}
	// Delegates route nothing on their own: they have no hosts.
	answers(t, c, "http://canary:9080/productpage/x", nil, "canary")
}

// A missing delegate and a root that delegates to another root (delegation
// is one level deep) drop only their own routes. The port's other
// services keep routing, a change to one of them in the same push takes
// effect, and a sidecar starting with the broken config in place serves
// the port. (Before delegation was translated, the delegating route became
// an empty weighted_clusters, the sidecar refused route configuration
// 9080 as a whole, and none of this happened.)
func TestBadDelegateLeavesPortRouting(t *testing.T) {
	leak.Check(t)
	const base = "127.78.2"
	m, c := delegateMesh(t, base, "")
	answers(t, c, "http://ratings:9080/", nil, "ratings")

	m.Write("mesh.yaml", delegateServices(base)+`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage]
  http:
  - match: [{uri: {prefix: /missing}}]
    delegate: {name: nope}
  - match: [{uri: {prefix: /chain}}]
    delegate: {name: canary-root}
  - route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: canary-root}
spec:
  hosts: [canary]
  http:
  - delegate: {name: nope}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings-v2}}]
`)
	// ratings' new route is in the same route configuration as the broken
	// delegations: seeing it proves the sidecar took that configuration.
	answers(t, c, "http://ratings:9080/", nil, "ratings-v2")
	answers(t, c, "http://productpage:9080/missing/a", nil, "productpage")
	answers(t, c, "http://productpage:9080/chain/a", nil, "productpage")
	// canary's root delegates only to a missing delegate: no routes, 404.
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, _ := meshtest.Get(t, c, "http://canary:9080/", nil)
		if resp.StatusCode != http.StatusNotFound {
			return fmt.Sprintf("canary answered %d (%s), want 404: its only route delegates to nothing", resp.StatusCode, resp.Header.Get("X-Backend"))
		}
		return ""
	})

	fresh := m.Sidecar("sleep2", base+".7", map[string]string{"app": "sleep"}).Client()
	defer fresh.CloseIdleConnections()
	answers(t, fresh, "http://ratings:9080/", nil, "ratings-v2")
	answers(t, fresh, "http://productpage:9080/", nil, "productpage")
}

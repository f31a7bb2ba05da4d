package sidecar_test

import (
	"net/http"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// A Sidecar's outboundTrafficPolicy decides, for the workloads it selects,
// whether hosts outside the registry are passed through (ALLOW_ANY) or
// refused (REGISTRY_ONLY, a 502 from the client's sidecar), over
// MeshConfig's mode for the rest, as in Istio.
func TestSidecarOutboundTrafficPolicy(t *testing.T) {
	leak.Check(t)
	for _, tc := range []struct {
		name, base, mesh, sidecar string
		// status of a request to an unregistered host from the pod the
		// Sidecar selects, and from another pod
		selected, other int
	}{
		{"REGISTRY_ONLY for one workload", "127.95.1", "ALLOW_ANY", "REGISTRY_ONLY", http.StatusBadGateway, http.StatusOK},
		{"ALLOW_ANY for one workload in a REGISTRY_ONLY mesh", "127.95.2", "REGISTRY_ONLY", "ALLOW_ANY", http.StatusOK, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, c := versionsMesh(t, tc.base, `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy: {mode: `+tc.mesh+`}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sleep}
spec:
  workloadSelector: {labels: {app: sleep}}
  outboundTrafficPolicy: {mode: `+tc.sidecar+`}
`, []string{"v1"}, nil)
			outside := tc.base + ".50:8080"
			meshtest.Backend(t, outside, "outside", nil)
			other := m.Sidecar("other", tc.base+".9", map[string]string{"app": "other"}).Client()
			t.Cleanup(other.CloseIdleConnections)
			for _, x := range []struct {
				who  string
				c    *http.Client
				want int
			}{{"sleep (selected)", c, tc.selected}, {"other", other, tc.other}} {
				resp, body := meshtest.Get(t, x.c, "http://"+outside+"/", nil)
				if resp.StatusCode != x.want {
					t.Errorf("%s to an unregistered host: %d %q, want %d", x.who, resp.StatusCode, body, x.want)
				}
				// Registered services are reached either way.
				if resp, body := meshtest.Get(t, x.c, "http://reviews:9080/", nil); resp.StatusCode != http.StatusOK || body != "v1" {
					t.Errorf("%s to reviews: %d %q, want 200 from v1", x.who, resp.StatusCode, body)
				}
			}
		})
	}
}

// REGISTRY_ONLY holds for a proxy that has no HTTP routes at all (only TCP
// services): an unknown host is refused through the forward proxy, not
// passed through. The proxy reads the policy from virtualOutbound's default
// chain, not only from a route table's block_all entry.
func TestRegistryOnlyWithoutHTTPRoutes(t *testing.T) {
	leak.Check(t)
	base := "127.95.3"
	m := meshtest.New(t, `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
`)
	outside := base + ".50:8080"
	meshtest.Backend(t, outside, "outside", nil)
	c := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}).Client()
	t.Cleanup(c.CloseIdleConnections)
	if resp, body := meshtest.Get(t, c, "http://"+outside+"/", nil); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET to an unregistered host under REGISTRY_ONLY: %d %q, want 502", resp.StatusCode, body)
	}
}

package sidecar_test

// Fixtures that many of this package's end-to-end tests share. The harness
// itself (control plane, sidecars, backends) is internal/testing/meshtest.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// reviewsConfig is a Service with two versions behind sidecars, a
// DestinationRule with their subsets and a VirtualService splitting
// between them (header route first). base is the pods' /24, e.g. "127.77.1".
func reviewsConfig(base string, v1, v2 int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec: {address: %[1]s.2, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2}
spec: {address: %[1]s.3, labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: %[2]d}
    - {destination: {host: reviews, subset: v2}, weight: %[3]d}
`, base, v1, v2)
}

// reviewsMesh starts the reviews mesh: backends and sidecars for v1 and
// v2 and a client sidecar (base.1).
func reviewsMesh(t testing.TB, base string, v1, v2 int) (*meshtest.Mesh, *meshtest.Pod) {
	m := meshtest.New(t, reviewsConfig(base, v1, v2))
	meshtest.Backend(t, base+".2:9080", "v1", nil)
	meshtest.Backend(t, base+".3:9080", "v2", nil)
	m.Sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"})
	m.Sidecar("reviews-v2", base+".3", map[string]string{"app": "reviews", "version": "v2"})
	client := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	c := client.Client()
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := c.Get("http://reviews:9080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Sprintf("reviews answered %d (%s)", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"))
		}
		return ""
	})
	return m, client
}

func statsLine(t testing.TB, p *meshtest.Pod, name string) string {
	t.Helper()
	var b strings.Builder
	if err := p.Proxy.WriteStats(&b, "text"); err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(b.String(), "\n") {
		if strings.HasPrefix(line, name+":") {
			return strings.TrimSpace(strings.TrimPrefix(line, name+":"))
		}
	}
	return ""
}

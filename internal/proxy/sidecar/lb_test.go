package sidecar_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// versionsMesh runs Service reviews (and reviews-<version> per version)
// with one sidecar'd backend per version at base.2, base.3, ..., a client
// sidecar at base.1, and extra config. It returns the client's HTTP client.
func versionsMesh(t *testing.T, base, extra string, versions []string, handler http.HandlerFunc) (*meshtest.Mesh, *http.Client) {
	t.Helper()
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
`)
	for i, v := range versions {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: reviews-%[1]s}
spec:
  selector: {app: reviews, version: %[1]s}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-%[1]s}
spec: {address: %[2]s.%[3]d, labels: {app: reviews, version: %[1]s, security.istio.io/tlsMode: istio}}
`, v, base, i+2)
	}
	if extra != "" {
		b.WriteString("---\n" + extra)
	}
	m := meshtest.New(t, b.String())
	for i, v := range versions {
		ip := fmt.Sprintf("%s.%d", base, i+2)
		meshtest.Backend(t, ip+":9080", v, handler)
		m.Sidecar("reviews-"+v, ip, map[string]string{"app": "reviews", "version": v})
	}
	client := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}).Client()
	t.Cleanup(client.CloseIdleConnections)
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := client.Get("http://reviews:9080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "reviews answered " + resp.Status
		}
		return ""
	})
	return m, client
}

func countAnswers(t *testing.T, c *http.Client, n int, header map[string]string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		resp, body := meshtest.Get(t, c, "http://reviews:9080/", header)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		counts[body]++
	}
	return counts
}

// SMI TrafficSplit with v1alpha1 quantities (900m/100m) splits 90/10.
func TestTrafficSplitOnTheWire(t *testing.T) {
	leak.Check(t)
	_, c := versionsMesh(t, "127.77.8", `apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: reviews}
spec:
  service: reviews
  backends:
  - {service: reviews-v1, weight: 900m}
  - {service: reviews-v2, weight: 100m}
`, []string{"v1", "v2"}, nil)
	const n = 2000
	counts := countAnswers(t, c, n, nil)
	if share := float64(counts["v1"]) / n * 100; math.Abs(share-90) > 5 {
		t.Errorf("v1 got %.1f%% (%v), want 90 ± 5", share, counts)
	}
}

// A GAMMA HTTPRoute attached to the Service: a header match to v2, the
// rest to v1, with a request header added on the way.
func TestHTTPRouteOnTheWire(t *testing.T) {
	leak.Check(t)
	_, c := versionsMesh(t, "127.77.9", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - backendRefs: [{name: reviews-v1, port: 9080}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-routed-by, value: httproute}]}
`, []string{"v1", "v2"}, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, w.Header().Get("X-Backend")+" "+r.Header.Get("X-Routed-By"))
	})
	if got := countAnswers(t, c, 50, map[string]string{"x-canary": "yes"}); got["v2 "] != 50 {
		t.Errorf("x-canary: yes went to %v, want all to v2", got)
	}
	if got := countAnswers(t, c, 50, nil); got["v1 httproute"] != 50 {
		t.Errorf("the default rule went to %v, want all to v1 with x-routed-by added", got)
	}
}

// Consistent hashing on a header keeps each user on one backend while
// users spread over several; ROUND_ROBIN spreads evenly.
func TestLoadBalancersOnTheWire(t *testing.T) {
	leak.Check(t)
	m, c := versionsMesh(t, "127.77.30", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
`, []string{"a", "b", "c"}, nil)
	used := map[string]bool{}
	for u := range 30 {
		got := countAnswers(t, c, 10, map[string]string{"x-user": fmt.Sprintf("user-%d", u)})
		if len(got) != 1 {
			t.Errorf("user-%d was spread over %v, want one backend", u, got)
		}
		for k := range got {
			used[k] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("30 users all hashed to %v", used)
	}

	m.Write("mesh.yaml", strings.Replace(m.Read("mesh.yaml"), "consistentHash: {httpHeaderName: x-user}", "simple: ROUND_ROBIN", 1))
	meshtest.Eventually(t, 10*time.Second, func() string {
		got := countAnswers(t, c, 30, map[string]string{"x-user": "same"})
		if got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
			return fmt.Sprintf("round robin gave %v, want 10 each", got)
		}
		return ""
	})
}

// A DestinationRule connection pool limit is a circuit breaker: requests
// beyond it get 503 with flag UO at once, the others succeed.
func TestConnectionPoolLimitOnTheWire(t *testing.T) {
	leak.Check(t)
	release := make(chan struct{})
	var inBackend atomic.Int64
	_, c := versionsMesh(t, "127.77.31", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {http2MaxRequests: 2}
`, []string{"v1"}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			// Held until every request has had its answer from the
			// limit, so the admitted ones are surely still in flight.
			inBackend.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "v1")
	})
	var mu sync.Mutex
	statuses := map[string]int{}
	var answered atomic.Int64
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer answered.Add(1)
			resp, err := c.Get("http://reviews:9080/slow")
			key := ""
			if err != nil {
				key = err.Error()
			} else {
				resp.Body.Close()
				key = fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"))
			}
			mu.Lock()
			statuses[key]++
			mu.Unlock()
		}()
	}
	// With the limit in force, two requests wait in the backend and the
	// other four are answered at once. Without it all six wait there, and
	// the deadline releases them to fail the check below.
	for deadline := time.Now().Add(10 * time.Second); answered.Load() < 4 || inBackend.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if n := inBackend.Load(); n > 2 {
			t.Errorf("%d requests reached the backend at once, want at most 2", n)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after 10 s: %d requests answered and %d in the backend, want 4 answered by the limit and 2 in the backend", answered.Load(), inBackend.Load())
			break
		}
	}
	close(release)
	wg.Wait()
	if statuses["200 "] != 2 || statuses["503 UO"] != 4 {
		t.Errorf("6 concurrent requests with http2MaxRequests 2 gave %v, want 2 × 200 and 4 × 503 UO", statuses)
	}
}

// Once an endpoint removal is applied (the client's /clusters no longer
// lists it), no request goes to it, not even on pooled connections.
func TestRemovedEndpointGetsNoRequests(t *testing.T) {
	leak.Check(t)
	const base = "127.77.32"
	m, c := versionsMesh(t, base, "", []string{"a", "b", "c"}, nil)
	client := m.Pod("sleep")
	if got := countAnswers(t, c, 60, nil); len(got) != 3 {
		t.Fatalf("before the removal answers came from %v, want all three", got)
	}
	cfg := m.Read("mesh.yaml")
	i := strings.Index(cfg, "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: reviews-c}")
	j := strings.Index(cfg[i+4:], "---")
	if j < 0 {
		cfg = cfg[:i]
	} else {
		cfg = cfg[:i] + cfg[i+4+j:]
	}
	m.Write("mesh.yaml", cfg)
	removed := base + ".4:9080"
	meshtest.Eventually(t, 10*time.Second, func() string {
		for _, cl := range client.Proxy.Clusters() {
			if !strings.HasPrefix(cl.Name, "outbound|9080||reviews.") {
				continue
			}
			for _, e := range cl.Endpoints {
				if e.Address == removed {
					return "the client still lists " + removed
				}
			}
		}
		return ""
	})
	if got := countAnswers(t, c, 300, nil); got["c"] != 0 || got["a"] == 0 || got["b"] == 0 {
		t.Errorf("after the removal answers came from %v, want a and b only", got)
	}
}

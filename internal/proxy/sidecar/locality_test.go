package sidecar_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// The locality tests' mesh: a Service echo with an app in region r1 zone
// z1 (a Pod carrying the topology labels) and one in r1/z2 (a
// WorkloadEntry with a locality), neither behind a sidecar, and a client
// sidecar whose pod is in r1/z1. The apps answer with their zone.

func echoLocalityConfig(base, z1, dr string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-z2}
spec: {address: %[1]s.3, labels: {app: echo}, locality: r1/z2}
---
%[3]s%[2]s`, base, z1, dr)
}

// echoZ1Pod is the z1 app as a Pod: its locality comes from its labels.
func echoZ1Pod(base string) string {
	return fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata:
  name: echo-z1
  labels: {app: echo, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1}
spec: {containers: [{name: app, image: echo, ports: [{containerPort: 8080}]}]}
status: {podIP: %s.2}
`, base)
}

// clientInZ1 starts the client sidecar of a pod in r1/z1.
func clientInZ1(m *meshtest.Mesh, base string) *meshtest.Pod {
	return m.Sidecar("client", base+".1", map[string]string{
		"app": "client", "topology.kubernetes.io/region": "r1", "topology.kubernetes.io/zone": "z1"})
}

// zoneCounts sends n requests to echo and counts the answers by body.
func zoneCounts(t *testing.T, c *http.Client, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		resp, body := meshtest.Get(t, c, "http://echo:8080/", nil)
		if resp.StatusCode != http.StatusOK {
			body = fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"))
		}
		counts[body]++
	}
	return counts
}

// waitFor polls echo until 20 answers in a row are all from want.
func waitFor(t *testing.T, c *http.Client, want string) {
	t.Helper()
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := zoneCounts(t, c, 20); got[want] != 20 {
			return fmt.Sprintf("answers %v, want all %s", got, want)
		}
		return ""
	})
}

// Locality failover, as Istio's default locality load balancing does it
// once the DestinationRule has outlier detection: the client in r1/z1
// sends everything to the z1 app while it is there, and to z2 when it is
// gone; back in place, z1 takes it all again. Without outlier detection
// (Istio applies no failover then) both zones share the traffic.
func TestLocalityFailover(t *testing.T) {
	leak.Check(t)
	const base = "127.77.180"
	outlier := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 100, interval: 10s, baseEjectionTime: 30s}
`
	m := meshtest.New(t, echoLocalityConfig(base, echoZ1Pod(base), outlier))
	meshtest.Backend(t, base+".2:8080", "z1", nil)
	meshtest.Backend(t, base+".3:8080", "z2", nil)
	c := clientInZ1(m, base).Client()
	defer c.CloseIdleConnections()
	m.WaitSynced()

	if got := zoneCounts(t, c, 200); got["z1"] != 200 {
		t.Fatalf("with both zones up: answers %v, want all 200 from z1", got)
	}
	// z1's app goes away: priority 1 (the same region) takes over.
	m.Write("mesh.yaml", echoLocalityConfig(base, "", outlier))
	waitFor(t, c, "z2")
	if got := zoneCounts(t, c, 100); got["z2"] != 100 {
		t.Errorf("with z1 gone: answers %v, want all 100 from z2", got)
	}
	m.Write("mesh.yaml", echoLocalityConfig(base, echoZ1Pod(base), outlier))
	waitFor(t, c, "z1")

	// No outlier detection: no failover priorities, both zones serve.
	m.Write("mesh.yaml", echoLocalityConfig(base, echoZ1Pod(base), strings.Replace(outlier,
		"    outlierDetection: {consecutive5xxErrors: 100, interval: 10s, baseEjectionTime: 30s}\n", "", 1)))
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := zoneCounts(t, c, 20); got["z1"] != 10 || got["z2"] != 10 {
			return fmt.Sprintf("answers %v, want round robin over z1 and z2", got)
		}
		return ""
	})
}

// Locality distribute: from r1/z1, 80% to r1/z1 and 20% to r1/z2, within
// ±5 points over 2,000 requests, under least request (Istio's default).
func TestLocalityDistribute(t *testing.T) {
	leak.Check(t)
	const base = "127.77.181"
	m := meshtest.New(t, echoLocalityConfig(base, echoZ1Pod(base), `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - {from: r1/z1/*, to: {"r1/z1/*": 80, "r1/z2/*": 20}}
`))
	meshtest.Backend(t, base+".2:8080", "z1", nil)
	meshtest.Backend(t, base+".3:8080", "z2", nil)
	c := clientInZ1(m, base).Client()
	defer c.CloseIdleConnections()
	m.WaitSynced()
	const n = 2000
	got := zoneCounts(t, c, n)
	if got["z1"]+got["z2"] != n {
		t.Fatalf("answers %v, want only z1 and z2", got)
	}
	if share := 100 * float64(got["z1"]) / n; math.Abs(share-80) > 5 {
		t.Errorf("z1 got %.1f%% of %d requests (%v), want 80 ± 5", share, n, got)
	}
}

// Warmup: an endpoint added to a service under load starts at a small
// share that grows over the window (Envoy's slow start, linear, from the
// 10% floor). With two old endpoints and a 4s window, the new one's share
// is at most 0.25/2.25 = 11% in its first second, against a third once the
// window is over.
func TestWarmupNewEndpoint(t *testing.T) {
	leak.Check(t)
	const base = "127.77.182"
	entry := func(i int) string {
		return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-%[2]d}
spec: {address: %[1]s.%[2]d, labels: {app: echo}}
`, base, i)
	}
	config := func(entries string) string {
		return `apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 4s}
` + entries
	}
	m := meshtest.New(t, config(entry(2)+entry(3)))
	for i := 2; i <= 4; i++ {
		meshtest.Backend(t, fmt.Sprintf("%s.%d:8080", base, i), fmt.Sprint("e", i), nil)
	}
	client := m.Sidecar("client", base+".1", map[string]string{"app": "client"})
	c := client.Client()
	defer c.CloseIdleConnections()
	m.WaitSynced()
	if got := zoneCounts(t, c, 100); got["e2"] != 50 || got["e3"] != 50 {
		t.Fatalf("the first endpoints are not warmed: answers %v, want 50 each", got)
	}

	m.Write("mesh.yaml", config(entry(2)+entry(3)+entry(4)))
	// Its window starts when the client's sidecar has it (within a poll
	// of 20ms); count the next second's answers.
	meshtest.Eventually(t, 10*time.Second, func() string {
		for _, cl := range client.Proxy.Clusters() {
			if cl.Name != "outbound|8080||echo.default.svc.cluster.local" {
				continue
			}
			for _, e := range cl.Endpoints {
				if e.Address == base+".4:8080" {
					return ""
				}
			}
		}
		return "the client's sidecar does not have the new endpoint yet"
	})
	joined := time.Now()
	first := map[string]int{}
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		for k, v := range zoneCounts(t, c, 10) {
			first[k] += v
		}
	}
	total := first["e2"] + first["e3"] + first["e4"]
	early := 100 * float64(first["e4"]) / float64(total)
	// Past the window, its full third.
	meshtest.Eventually(t, 10*time.Second, func() string {
		if time.Since(joined) < 4*time.Second {
			return "the window is not over"
		}
		got := zoneCounts(t, c, 300)
		if late := 100 * float64(got["e4"]) / 300; math.Abs(late-100.0/3) > 5 {
			return fmt.Sprintf("after the window the new endpoint got %.1f%% (%v), want 33 ± 5", late, got)
		}
		return ""
	})
	if early > 16 || first["e4"] == 0 {
		t.Errorf("in its first second the new endpoint got %.1f%% of %d requests (%v), want 5-11%%", early, total, first)
	}
}

// Failover on outlier detection: the z1 app starts answering 503, its
// first 503 ejects it (consecutive5xxErrors: 1; maxEjectionPercent 100,
// since Envoy's default 10% ejects neither of two endpoints), and the
// client's traffic moves to z2, the next priority, for the ejection.
func TestLocalityFailoverOnEjection(t *testing.T) {
	leak.Check(t)
	const base = "127.77.183"
	m := meshtest.New(t, echoLocalityConfig(base, echoZ1Pod(base), `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
`))
	var failing atomic.Bool
	meshtest.Backend(t, base+".2:8080", "z1", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, "z1")
	})
	meshtest.Backend(t, base+".3:8080", "z2", nil)
	c := clientInZ1(m, base).Client()
	defer c.CloseIdleConnections()
	m.WaitSynced()
	if got := zoneCounts(t, c, 100); got["z1"] != 100 {
		t.Fatalf("z1 healthy: answers %v, want all 100 from z1", got)
	}
	failing.Store(true)
	got := zoneCounts(t, c, 200)
	if got["z2"] < 199 || got["z2"]+got["503 "] != 200 {
		t.Errorf("z1 failing: answers %v, want one 503 that ejects z1, then z2", got)
	}
}

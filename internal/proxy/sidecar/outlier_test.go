package sidecar_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// outlierCluster is the client's cluster for Service app.
const outlierCluster = "outbound|8080||app.default.svc.cluster.local"

// outlierBackend is one endpoint of Service app: an app that answers
// status (200 until set), with its own sidecar when sidecar is set.
type outlierBackend struct {
	name    string
	status  atomic.Int32
	sidecar bool
	// refuse leaves the endpoint's port closed: connections are refused.
	refuse bool
}

func (b *outlierBackend) set(status int) { b.status.Store(int32(status)) }

// outlierMesh runs Service app on port 8080 with one endpoint per backend
// (base.2, base.3, ...), the DestinationRule dr, and a client sidecar at
// base.1 whose HTTP client it returns once every backend that does not
// refuse has answered 200 through it, none ejected: a test sets the
// failures it wants after that, so that none comes from a sidecar still
// starting.
func outlierMesh(t *testing.T, base, dr string, backends ...*outlierBackend) (*meshtest.Pod, *http.Client) {
	t.Helper()
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  selector: {app: app}
  ports: [{name: http-web, port: 8080}]
`)
	for i, be := range backends {
		tls := ""
		if be.sidecar {
			tls = ", security.istio.io/tlsMode: istio"
		}
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: %s}\nspec: {address: %s.%d, labels: {app: app%s}}\n", be.name, base, i+2, tls)
	}
	b.WriteString("---\n" + dr)
	m := meshtest.New(t, b.String())
	for i, be := range backends {
		if be.refuse {
			continue
		}
		ip := fmt.Sprintf("%s.%d", base, i+2)
		meshtest.Backend(t, ip+":8080", be.name, func(w http.ResponseWriter, r *http.Request) {
			if s := int(be.status.Load()); s != 0 {
				w.WriteHeader(s)
			}
			io.WriteString(w, be.name)
		})
		if be.sidecar {
			m.Sidecar(be.name, ip, map[string]string{"app": "app"})
		}
	}
	client := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	c := client.Client()
	t.Cleanup(c.CloseIdleConnections)
	m.WaitSynced()
	answered := map[string]bool{}
	meshtest.Eventually(t, 10*time.Second, func() string {
		if n := outlierStat(client, "outlier_detection.ejections_active"); n < 0 {
			return "the client has no outlier detection on " + outlierCluster
		}
		if who, status := answer(t, c); status == http.StatusOK {
			answered[who] = true
		}
		for _, be := range backends {
			if !be.refuse && !answered[be.name] {
				return fmt.Sprintf("%s has not answered through the client yet (answered: %v)", be.name, answered)
			}
		}
		return ""
	})
	refusing := false
	for _, be := range backends {
		refusing = refusing || be.refuse
	}
	if n := outlierStat(client, "outlier_detection.ejections_active"); n != 0 && !refusing {
		t.Fatalf("%d endpoints ejected while the mesh started", n)
	}
	return client, c
}

// outlierStat is one of the client's counters for Service app's cluster,
// as the admin /stats page shows them (cluster.<name>.<stat>); -1 if none.
func outlierStat(p *meshtest.Pod, name string) int64 {
	for _, c := range p.Proxy.Clusters() {
		if c.Name != outlierCluster {
			continue
		}
		if v, ok := c.Counters[name]; ok {
			return int64(v)
		}
	}
	return -1
}

// answer sends one request to Service app and returns who answered and
// the status.
func answer(t *testing.T, c *http.Client) (string, int) {
	t.Helper()
	resp, _ := meshtest.Get(t, c, "http://app:8080/", nil)
	return resp.Header.Get("X-Backend"), resp.StatusCode
}

// untilEjected sends requests until the client's sidecar has stat at
// want, and returns the answers it got meanwhile.
func untilEjected(t *testing.T, client *meshtest.Pod, c *http.Client, stat string, want int64) map[string]int {
	t.Helper()
	seen := map[string]int{}
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := outlierStat(client, stat); got >= want {
			return ""
		}
		who, status := answer(t, c)
		seen[fmt.Sprintf("%s %d", who, status)]++
		return fmt.Sprintf("%s never reached %d; answers: %v", stat, want, seen)
	})
	return seen
}

// A failing endpoint is ejected after consecutive5xxErrors, the healthy
// ones take every request while it is out, and it is tried again once
// baseEjectionTime has passed: brought back healthy, it answers. Through
// two sidecars, with Istio's default load balancer.
func TestOutlierDetectionEjectsFailingEndpoint(t *testing.T) {
	leak.Check(t)
	a := &outlierBackend{name: "a", sidecar: true}
	b := &outlierBackend{name: "b", sidecar: true}
	bad := &outlierBackend{name: "bad", sidecar: true}
	client, c := outlierMesh(t, "127.141.1", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 100ms
      baseEjectionTime: 2s
      maxEjectionPercent: 100
`, a, b, bad)
	bad.set(http.StatusServiceUnavailable)
	seen := untilEjected(t, client, c, "outlier_detection.ejections_active", 1)
	ejected := time.Now()
	if seen["bad 503"] < 3 {
		t.Errorf("ejected after %v, want at least 3 of bad's 503s first", seen)
	}
	if n := outlierStat(client, "outlier_detection.ejections_enforced_consecutive_5xx"); n != 1 {
		t.Errorf("ejections_enforced_consecutive_5xx = %d, want 1", n)
	}
	bad.set(http.StatusOK)
	after := map[string]int{}
	for range 30 {
		who, status := answer(t, c)
		after[fmt.Sprintf("%s %d", who, status)]++
	}
	if after["a 200"]+after["b 200"] != 30 || after["a 200"] == 0 || after["b 200"] == 0 {
		t.Fatalf("while bad is ejected, answers were %v; want all 30 from a and b", after)
	}
	// Back after its 2s: now healthy, it answers again.
	meshtest.Eventually(t, 10*time.Second, func() string {
		who, status := answer(t, c)
		if who == "bad" && status == http.StatusOK {
			return ""
		}
		return "bad has not answered since its ejection"
	})
	if back := time.Since(ejected); back < 1500*time.Millisecond {
		t.Errorf("bad answered %v after its ejection, want after baseEjectionTime (2s)", back)
	}
	if n := outlierStat(client, "outlier_detection.ejections_active"); n != 0 {
		t.Errorf("ejections_active = %d after bad came back, want 0", n)
	}
}

// consecutiveGatewayErrors counts 502, 503 and 504 only: a backend that
// answers 500 is never ejected by it, one that answers 502 is.
func TestOutlierDetectionGatewayErrors(t *testing.T) {
	leak.Check(t)
	good := &outlierBackend{name: "good"}
	bad := &outlierBackend{name: "bad"}
	client, c := outlierMesh(t, "127.141.2", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection:
      consecutive5xxErrors: 0
      consecutiveGatewayErrors: 2
      interval: 100ms
      baseEjectionTime: 30s
      maxEjectionPercent: 100
`, good, bad)
	bad.set(http.StatusInternalServerError)
	seen := map[string]int{}
	for range 40 {
		who, status := answer(t, c)
		seen[fmt.Sprintf("%s %d", who, status)]++
	}
	if seen["bad 500"] < 15 || outlierStat(client, "outlier_detection.ejections_active") != 0 {
		t.Fatalf("answers %v, ejections_active %d: want bad's 500s all along and no ejection",
			seen, outlierStat(client, "outlier_detection.ejections_active"))
	}
	bad.set(http.StatusBadGateway)
	untilEjected(t, client, c, "outlier_detection.ejections_enforced_consecutive_gateway_failure", 1)
	for range 20 {
		if who, status := answer(t, c); who != "good" || status != http.StatusOK {
			t.Fatalf("answer from %s %d while bad is ejected, want good 200", who, status)
		}
	}
}

// With splitExternalLocalOriginErrors, connections refused count as
// local-origin failures: the endpoint whose port is closed is ejected
// after consecutiveLocalOriginFailures, and no connection is tried to it
// while it is out.
func TestOutlierDetectionLocalOriginFailures(t *testing.T) {
	leak.Check(t)
	good := &outlierBackend{name: "good"}
	closed := &outlierBackend{name: "closed", refuse: true}
	client, c := outlierMesh(t, "127.141.3", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection:
      consecutive5xxErrors: 0
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
      interval: 100ms
      baseEjectionTime: 30s
      maxEjectionPercent: 100
`, good, closed)
	untilEjected(t, client, c, "outlier_detection.ejections_enforced_consecutive_local_origin_failure", 1)
	fails := outlierStat(client, "upstream_cx_connect_fail")
	if fails < 2 {
		t.Fatalf("upstream_cx_connect_fail = %d at the ejection, want the 2 refused connections that caused it", fails)
	}
	for range 20 {
		if who, status := answer(t, c); who != "good" || status != http.StatusOK {
			t.Fatalf("answer from %q %d while closed is ejected, want good 200", who, status)
		}
	}
	if n := outlierStat(client, "upstream_cx_connect_fail"); n != fails {
		t.Errorf("%d more connections refused while the closed endpoint was ejected, want none", n-fails)
	}
}

// maxEjectionPercent caps how many endpoints are out at once: with 25%
// of 4, one of two failing endpoints is ejected and the other keeps
// getting its share (Envoy counts the refusal as ejections_overflow).
func TestOutlierDetectionMaxEjectionPercent(t *testing.T) {
	leak.Check(t)
	backends := []*outlierBackend{{name: "a"}, {name: "b"}, {name: "bad1"}, {name: "bad2"}}
	client, c := outlierMesh(t, "127.141.4", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 100ms
      baseEjectionTime: 30s
      maxEjectionPercent: 25
`, backends...)
	backends[2].set(http.StatusServiceUnavailable)
	backends[3].set(http.StatusServiceUnavailable)
	untilEjected(t, client, c, "outlier_detection.ejections_overflow", 1)
	seen := map[string]int{}
	for range 30 {
		who, status := answer(t, c)
		seen[fmt.Sprintf("%s %d", who, status)]++
	}
	if n := outlierStat(client, "outlier_detection.ejections_active"); n != 1 {
		t.Errorf("ejections_active = %d, want 1 (25%% of 4)", n)
	}
	if (seen["bad1 503"] == 0) == (seen["bad2 503"] == 0) || seen["a 200"] == 0 || seen["b 200"] == 0 {
		t.Errorf("answers %v: want a, b and exactly one of bad1 and bad2 still answering", seen)
	}
}

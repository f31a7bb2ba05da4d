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

// portsMesh runs Services with ports 9080 and 9090, one sidecar'd backend
// each (at base.2, base.3, ... in the order of names) answering
// "<name>-<port>", under a REGISTRY_ONLY mesh, so that a port a sidecar
// does not import answers 502 rather than passing through. It returns the
// pod "sleep" at base.1 and its client; "other", which no Sidecar selects, runs at
// base.9 to show every port answers.
func portsMesh(t *testing.T, base string, names []string, sidecar string) (*meshtest.Pod, *http.Client) {
	t.Helper()
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
` + sidecar)
	for i, n := range names {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %[1]s}
spec: {address: %[2]s.%[3]d, labels: {app: %[1]s, security.istio.io/tlsMode: istio}}
`, n, base, i+2)
	}
	m := meshtest.New(t, b.String())
	for i, n := range names {
		ip := fmt.Sprintf("%s.%d", base, i+2)
		meshtest.Backend(t, ip+":9080", n+"-9080", nil)
		meshtest.Backend(t, ip+":9090", n+"-9090", nil)
		m.Sidecar(n, ip, map[string]string{"app": n})
	}
	sleepPod := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	sleep := sleepPod.Client()
	other := m.Sidecar("other", base+".9", map[string]string{"app": "other"}).Client()
	t.Cleanup(sleep.CloseIdleConnections)
	t.Cleanup(other.CloseIdleConnections)
	// Every backend answers on both ports through a sidecar without a
	// Sidecar resource: the ports sleep cannot reach are its Sidecar's
	// doing.
	for _, n := range names {
		for _, port := range []string{"9080", "9090"} {
			meshtest.Eventually(t, 10*time.Second, func() string {
				resp, err := other.Get("http://" + n + ":" + port + "/")
				if err != nil {
					return err.Error()
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != n+"-"+port {
					return fmt.Sprintf("other to %s:%s: %s from %q", n, port, resp.Status, resp.Header.Get("X-Backend"))
				}
				return ""
			})
		}
	}
	return sleepPod, sleep
}

// wantAnswer checks what sleep gets from host:port: 200 from that backend, or
// the 502 of a REGISTRY_ONLY sidecar that does not know the port.
func wantAnswer(t *testing.T, c *http.Client, hostPort string, status int) {
	t.Helper()
	resp, body := meshtest.Get(t, c, "http://"+hostPort+"/", nil)
	backend := strings.ReplaceAll(hostPort, ":", "-")
	switch {
	case resp.StatusCode != status:
		t.Errorf("sleep to %s: %d %q, want %d", hostPort, resp.StatusCode, body, status)
	case status == http.StatusOK && body != backend:
		t.Errorf("sleep to %s: answered by %q, want %q", hostPort, body, backend)
	case status != http.StatusOK && resp.Header.Get("X-Backend") != "":
		t.Errorf("sleep to %s: reached backend %q", hostPort, resp.Header.Get("X-Backend"))
	}
}

// A Sidecar egress listener with a port imports its hosts on that port
// only: the client reaches reviews on 9080, and 9090 is a port its
// sidecar does not know (REGISTRY_ONLY: 502), as in Istio.
func TestSidecarEgressPortOnly(t *testing.T) {
	leak.Check(t)
	_, sleep := portsMesh(t, "127.96.1", []string{"reviews"}, `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sleep}
spec:
  workloadSelector: {labels: {app: sleep}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.default.svc.cluster.local"]
`)
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := sleep.Get("http://reviews:9080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "sleep to reviews:9080: " + resp.Status
		}
		return ""
	})
	wantAnswer(t, sleep, "reviews:9080", http.StatusOK)
	wantAnswer(t, sleep, "reviews:9090", http.StatusBadGateway)
}

// With a port listener and the catch-all, the port listener alone decides
// its port (ratings is not on 9080 although the catch-all lists ./*), and
// the catch-all gives every other port.
func TestSidecarEgressPortAndCatchAll(t *testing.T) {
	leak.Check(t)
	_, sleep := portsMesh(t, "127.96.2", []string{"ratings", "reviews"}, `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sleep}
spec:
  workloadSelector: {labels: {app: sleep}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.default.svc.cluster.local"]
  - hosts: ["./*"]
`)
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := sleep.Get("http://reviews:9080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "sleep to reviews:9080: " + resp.Status
		}
		return ""
	})
	wantAnswer(t, sleep, "reviews:9080", http.StatusOK)
	wantAnswer(t, sleep, "reviews:9090", http.StatusOK)
	wantAnswer(t, sleep, "ratings:9090", http.StatusOK)
	wantAnswer(t, sleep, "ratings:9080", http.StatusBadGateway)
}

// The egress port's protocol is the listener's: reviews' 9090 is declared
// HTTP, but the Sidecar's TCP listener for it carries a CONNECT tunnel to
// the backend and routes no plain HTTP request (REGISTRY_ONLY: 502).
func TestSidecarEgressPortProtocol(t *testing.T) {
	leak.Check(t)
	sleepPod, sleep := portsMesh(t, "127.96.3", []string{"reviews"}, `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sleep}
spec:
  workloadSelector: {labels: {app: sleep}}
  egress:
  - port: {number: 9090, protocol: TCP, name: tcp}
    hosts: ["./reviews.default.svc.cluster.local"]
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.default.svc.cluster.local"]
`)
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := sleep.Get("http://reviews:9080/")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "sleep to reviews:9080: " + resp.Status
		}
		return ""
	})
	wantAnswer(t, sleep, "reviews:9090", http.StatusBadGateway)

	c, br := connectVia(t, sleepPod, "reviews:9090", "GET /tunnel HTTP/1.1\r\nHost: reviews:9090\r\nConnection: close\r\n\r\n")
	defer c.Close()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET through the tunnel: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != "reviews-9090" || resp.Header.Get("X-Seen-Path") != "/tunnel" {
		t.Errorf("GET through the tunnel to reviews:9090: %s from %q (path %q), want 200 from reviews-9090",
			resp.Status, resp.Header.Get("X-Backend"), resp.Header.Get("X-Seen-Path"))
	}
}

package sidecar_test

import (
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
	"github.com/trellismesh/trellis/internal/testing/needs"
)

// unanswered listens at addr with a backlog of one and never accepts, then
// fills that backlog itself: the kernel drops later SYNs, so a connect to
// addr neither succeeds nor fails until the dialer's own timeout.
func unanswered(t *testing.T, ip string, port int) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	sa := &syscall.SockaddrInet4{Port: port}
	copy(sa.Addr[:], net.ParseIP(ip).To4())
	if err := syscall.Bind(fd, sa); err != nil {
		t.Fatalf("bind %s:%d: %v", ip, port, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(ip, fmt.Sprint(port))
	filler, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("filling the backlog of %s: %v", addr, err)
	}
	t.Cleanup(func() { filler.Close() })
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		needs.Skip(t, "the kernel accepted a connect past a full backlog at %s; cannot make a connect hang here", addr)
	}
}

// MeshConfig connectTimeout bounds every connect a sidecar makes: a service
// whose endpoint never answers SYNs gets 503 UF after it, not after the
// former fixed 10 s; a DestinationRule's connectionPool.tcp.connectTimeout
// still wins for its host. Retries are turned off, so that one connect
// is what is timed (Istio's default policy would try three).
func TestMeshConnectTimeoutOnTheWire(t *testing.T) {
	leak.Check(t)
	const base = "127.91.4"
	unanswered(t, base+".2", 9080)
	m := meshtest.New(t, `apiVersion: v1
kind: Service
metadata: {name: mute}
spec:
  selector: {app: mute}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: patient}
spec:
  selector: {app: mute}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: mute}
spec: {address: `+base+`.2, labels: {app: mute}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: patient}
spec:
  host: patient
  trafficPolicy:
    connectionPool:
      tcp: {connectTimeout: 1200ms}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    connectTimeout: 300ms
    defaultHttpRetryPolicy: {attempts: 0}
`)
	c := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}).Client()
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		host     string
		min, max time.Duration
	}{
		{"mute", 300 * time.Millisecond, 1100 * time.Millisecond},
		{"patient", 1200 * time.Millisecond, 4 * time.Second},
	} {
		var took time.Duration
		meshtest.Eventually(t, 10*time.Second, func() string {
			start := time.Now()
			resp, body, err := getCtx(t, c, 6*time.Second, "http://"+tc.host+":9080/", nil)
			took = time.Since(start)
			if err != nil {
				return fmt.Sprintf("GET %s: %v after %s (the connect timeout did not end it)", tc.host, err, took)
			}
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Trellis-Flags") != "UF" {
				return fmt.Sprintf("GET %s: %d %q %q, want 503 UF", tc.host, resp.StatusCode, resp.Header.Get("X-Trellis-Flags"), body)
			}
			return ""
		})
		if took < tc.min || took > tc.max {
			t.Errorf("GET %s failed after %s, want its connect timeout (between %s and %s)", tc.host, took, tc.min, tc.max)
		}
	}
}

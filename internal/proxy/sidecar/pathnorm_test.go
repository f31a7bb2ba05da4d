package sidecar_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

var sortStrings = cmpopts.SortSlices(func(a, b string) bool { return a < b })

// pathsSeen is an app that records the request target of every request
// it is sent.
type pathsSeen struct {
	mu    sync.Mutex
	paths []string
}

func (p *pathsSeen) handle(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.paths = append(p.paths, r.RequestURI)
	p.mu.Unlock()
	io.WriteString(w, "payment")
}

// admin lists the targets seen under /admin, however spelled.
func (p *pathsSeen) admin() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, s := range p.paths {
		if strings.Contains(strings.ToLower(s), "admin") {
			out = append(out, s)
		}
	}
	return out
}

// tunnelGet sends GET target to pod ip's app straight into its sidecar's
// tunnel port (plaintext CONNECT), past any client sidecar, and returns
// the app's status line and the path it saw (X-Seen-Path).
func tunnelGet(t *testing.T, ip, target string) (status, seen string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", ip+":15008", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:9080 HTTP/1.1\r\nHost: %[1]s:9080\r\n\r\nGET %s HTTP/1.1\r\nHost: payment-service:9080\r\nConnection: close\r\n\r\n", ip, target)
	b, _ := io.ReadAll(c)
	_, rest, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		return "tunnel: " + firstLine(string(b)), ""
	}
	return statusAndSeen(rest)
}

// proxyGet is tunnelGet through the client pod's forward proxy.
func proxyGet(t *testing.T, p *meshtest.Pod, target string) (status, seen string) {
	t.Helper()
	return statusAndSeen(rawGet(t, p, "payment-service:9080", target))
}

func statusAndSeen(resp string) (string, string) {
	head, _, _ := strings.Cut(resp, "\r\n\r\n")
	seen := ""
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "X-Seen-Path") {
			seen = strings.TrimSpace(v)
		}
	}
	return firstLine(head), seen
}

// Path normalization as Istio configures it (MeshConfig pathNormalization,
// default BASE): a DENY on /admin and /admin/* holds for every spelling
// of those paths that normalizes to them, checked both through the
// client's sidecar and straight into the workload's tunnel (the inbound
// side alone), and the app never sees them; an allowed /a/./b reaches the
// app as /a/b, one spelling judged and served. Under BASE an escaped
// slash is kept (/admin%2Fx is not /admin/x and passes); switching the
// mesh to DECODE_AND_MERGE_SLASHES decodes it, and merges slashes, so
// /admin%2Fx and //admin//x are refused too.
func TestPathNormalizationAuthz(t *testing.T) {
	leak.Check(t)
	const base = "127.77.241"
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
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: payment-service}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin", "/admin/*"]}}]}]
`, base)
	m := meshtest.New(t, cfg)
	app := &pathsSeen{}
	m.Backend(base+".2:9080", "payment", app.handle)
	payment := m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"})
	sleep := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	m.WaitSynced()

	type want struct{ status, seen string }
	denied := want{"HTTP/1.1 403 Forbidden", ""}
	check := func(phase string, cases map[string]want) {
		t.Helper()
		for target, w := range cases {
			if st, seen := tunnelGet(t, base+".2", target); st != w.status || seen != w.seen {
				t.Errorf("%s: %s into the tunnel: %q, app saw %q; want %q, %q", phase, target, st, seen, w.status, w.seen)
			}
			if st, seen := proxyGet(t, sleep, target); st != w.status || seen != w.seen {
				t.Errorf("%s: %s through the client's sidecar: %q, app saw %q; want %q, %q", phase, target, st, seen, w.status, w.seen)
			}
		}
	}
	check("BASE", map[string]want{
		"/admin/x":                 denied,
		"/public/../admin":         denied,
		"/public/../admin/x":       denied,
		"/admin/./x":               denied,
		"/public/%2e%2e/admin/x":   denied,
		`/public/..\admin\x`:       denied,
		"/%61dmin/x":               denied,
		"/a/./b":                   {"HTTP/1.1 200 OK", "/a/b"},
		"/a/b/../c?q=/../admin":    {"HTTP/1.1 200 OK", "/a/c?q=/../admin"},
		"/admin%2Fx":               {"HTTP/1.1 200 OK", "/admin%2Fx"},
		"//admin//x":               {"HTTP/1.1 200 OK", "//admin//x"},
		"/public/x/../../pay/./ok": {"HTTP/1.1 200 OK", "/pay/ok"},
	})
	// Twice each: through the tunnel and through the client's sidecar.
	// BASE keeps escaped slashes and repeated slashes, as Istio's does.
	wantSeen := []string{"/admin%2Fx", "/admin%2Fx", "//admin//x", "//admin//x", "/a/c?q=/../admin", "/a/c?q=/../admin"}
	if diff := cmp.Diff(wantSeen, app.admin(), sortStrings); diff != "" {
		t.Errorf("under BASE the paths naming admin the app saw (-want +got):\n%s", diff)
	}

	// A path that cannot be normalized (a NUL) is Envoy's 400, counted.
	if st, seen := tunnelGet(t, base+".2", "/admin%00/x"); st != "HTTP/1.1 400 Bad Request" || seen != "" {
		t.Errorf("BASE: /admin%%00/x: %q, app saw %q; want 400 and nothing", st, seen)
	}
	if n := statInt(t, payment, "http.inbound.downstream_rq_failed_path_normalization"); n != 1 {
		t.Errorf("downstream_rq_failed_path_normalization %d, want 1", n)
	}

	m.Write("meshconfig.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    pathNormalization:\n      normalization: DECODE_AND_MERGE_SLASHES\n")
	meshtest.Eventually(t, 10*time.Second, func() string {
		if st, _ := tunnelGet(t, base+".2", "/admin%2Fx"); st != denied.status {
			return "/admin%2Fx after DECODE_AND_MERGE_SLASHES: " + st
		}
		return ""
	})
	m.WaitSynced()
	before := len(app.admin())
	check("DECODE_AND_MERGE_SLASHES", map[string]want{
		"/admin%2Fx":             denied,
		"/admin%5cx":             denied,
		"//admin//x":             denied,
		"/public%2F..%2Fadmin":   denied,
		"/public/../admin":       denied,
		"/a/./b":                 {"HTTP/1.1 200 OK", "/a/b"},
		"/a%2Fb//c":              {"HTTP/1.1 200 OK", "/a/b/c"},
		"/a/b?x=%2F..%2Fadmin//": {"HTTP/1.1 200 OK", "/a/b?x=%2F..%2Fadmin//"},
	})
	wantSeen = []string{"/a/b?x=%2F..%2Fadmin//", "/a/b?x=%2F..%2Fadmin//"}
	if diff := cmp.Diff(wantSeen, app.admin()[before:], sortStrings); diff != "" {
		t.Errorf("under DECODE_AND_MERGE_SLASHES the paths naming admin the app saw (-want +got):\n%s", diff)
	}
}

// MeshConfig NONE leaves paths as sent, as Istio's NONE does: the DENY
// judges /public/../admin as written (it passes) and the app is sent
// exactly that, one spelling judged and served.
func TestPathNormalizationNone(t *testing.T) {
	leak.Check(t)
	const base = "127.77.242"
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
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: payment-service}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin", "/admin/*"]}}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    pathNormalization:
      normalization: NONE
`, base)
	m := meshtest.New(t, cfg)
	app := &pathsSeen{}
	m.Backend(base+".2:9080", "payment", app.handle)
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"})
	m.WaitSynced()
	if st, seen := tunnelGet(t, base+".2", "/public/../admin"); st != "HTTP/1.1 200 OK" || seen != "/public/../admin" {
		t.Errorf("NONE: /public/../admin: %q, app saw %q; want 200 and the path as sent", st, seen)
	}
	if st, _ := tunnelGet(t, base+".2", "/admin/x"); st != "HTTP/1.1 403 Forbidden" {
		t.Errorf("NONE: /admin/x: %q, want 403", st)
	}
}

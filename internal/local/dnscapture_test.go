package local_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/needs"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// sidecarStat reads one counter from a sidecar's /stats over its admin
// socket.
func sidecarStat(t *testing.T, socket, name string) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://sidecar/stats")
	if err != nil {
		t.Fatalf("sidecar stats: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("stat %s: %q", name, line)
			}
			return n
		}
	}
	t.Fatalf("sidecar stats lack %s:\n%s", name, b)
	return 0
}

// getent runs `getent hosts NAME` in a pod and returns its address, "" if
// the name did not resolve.
func getent(t *testing.T, m *uptest.Mesh, podName, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, errOut, code := m.Trellis(ctx, "exec", podName, "--", "getent", "hosts", name)
	if code == 2 {
		return "" // not found
	}
	if code != 0 {
		t.Fatalf("trellis exec %s -- getent hosts %s: exit %d\n%s%s", podName, name, code, out, errOut)
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		t.Fatalf("getent hosts %s printed nothing", name)
	}
	return f[0]
}

// In transparent mode a sidecar captures its pod's DNS (Istio's DNS
// proxying) and answers mesh names itself, forwarding the rest to the node
// resolver; a pod without a sidecar resolves through the node resolver
// alone, to the same address.
func TestUpTransparentDNSCapture(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "transparent mode needs root (CI runs as root)")
	}
	if _, err := os.Stat("/usr/bin/getent"); err != nil {
		needs.Skip(t, "needs getent (glibc)")
	}
	m := uptest.Start(t, "testdata/mixed", "--transparent")
	s := readState(t, m)
	sleep := pod(t, s, "sleep")
	if sleep.Sidecar == nil {
		t.Fatal("the sleep pod has no sidecar")
	}
	sock := sleep.Sidecar.AdminSocket

	answered := sidecarStat(t, sock, "dns.answered_total")
	vip := getent(t, m, "sleep", "ratings")
	if !strings.HasPrefix(vip, "10.96.") {
		t.Fatalf("sleep resolved ratings to %q, want its Service VIP (10.96/16)", vip)
	}
	if got := sidecarStat(t, sock, "dns.answered_total"); got <= answered {
		t.Errorf("dns.answered_total went %d → %d over a lookup of ratings: the sidecar did not answer it", answered, got)
	}
	if got := getent(t, m, "sleep", "ratings.default.svc.cluster.local"); got != vip {
		t.Errorf("sleep resolved ratings' full name to %q, want %s", got, vip)
	}

	// What the sidecar does not know goes to the node resolver, through the
	// capture's exclusion of the proxy's own queries.
	upstream := sidecarStat(t, sock, "dns.upstream_requests_total")
	if got := getent(t, m, "sleep", "nothing-here.default.svc.cluster.local"); got != "" {
		t.Errorf("an unknown name resolved to %q", got)
	}
	if got := sidecarStat(t, sock, "dns.upstream_requests_total"); got <= upstream {
		t.Errorf("dns.upstream_requests_total went %d → %d over an unknown name: not forwarded", upstream, got)
	}
	if got := sidecarStat(t, sock, "dns.upstream_failures_total"); got != 0 {
		t.Errorf("dns.upstream_failures_total = %d: the node resolver did not answer the sidecar", got)
	}

	// The pod without a sidecar asks the node resolver, not sleep's sidecar.
	requests := sidecarStat(t, sock, "dns.requests_total")
	if got := getent(t, m, "plain", "ratings"); got != vip {
		t.Errorf("plain resolved ratings to %q, want %s", got, vip)
	}
	if got := sidecarStat(t, sock, "dns.requests_total"); got != requests {
		t.Errorf("sleep's sidecar counted %d DNS requests during plain's lookup", got-requests)
	}
	// And names still work for traffic: curl by name from the sidecar pod.
	if got := curl(t, m, nil, "http://ratings:9080/ratings/1"); got[0] != "200" {
		t.Errorf("sleep → ratings by name answered %v", got)
	}
}

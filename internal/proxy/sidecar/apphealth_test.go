package sidecar

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/apphealth"
)

// Scenario: an explicit-mode pod on 127.77.120.5 whose app serves
// /healthz on the pod IP; the sidecar's status port 15020 on the pod IP
// answers the rewritten readiness probe by probing the app, and nothing
// else: an app-health path without a probe is 400, other paths 404.
func TestServeAppHealth(t *testing.T) {
	podIP := netip.MustParseAddr("127.77.120.5")
	ln, err := net.Listen("tcp", net.JoinHostPort(podIP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	var from string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from = r.RemoteAddr
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "app ok")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ps, err := apphealth.Parse(fmt.Sprintf(`{"/app-health/web/readyz": {"httpGet": {"path": "/healthz", "port": %d}, "timeoutSeconds": 1}}`, ln.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	stop, err := ServeAppHealth(Options{Mode: Explicit, PodIP: podIP}, ps)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	client := &http.Client{Timeout: 5 * time.Second}
	for path, want := range map[string]string{
		"/app-health/web/readyz": "200 app ok",
		"/app-health/web/livez":  "400",
		"/stats":                 "404",
	} {
		resp, err := client.Get("http://" + podIP.String() + ":15020" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := fmt.Sprint(resp.StatusCode)
		if resp.StatusCode == 200 {
			got += " " + string(b)
		}
		if got != want {
			t.Errorf("GET %s: %q, want %q", path, got, want)
		}
	}
	// Explicit mode: from the pod IP, as the sidecar's inbound handoff.
	if host, _, _ := net.SplitHostPort(from); host != podIP.String() {
		t.Errorf("the app was probed from %s, want the pod IP", from)
	}
	stop()
	if _, err := net.DialTimeout("tcp", podIP.String()+":15020", time.Second); err == nil {
		t.Error("15020 still accepts after stop")
	}
}

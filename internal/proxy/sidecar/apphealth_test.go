package sidecar

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
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
	stop, err := serveStatus(Options{Mode: Explicit, PodIP: podIP}, ps, nil, nil)
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

// The status port's /stats/prometheus is the pod's merged view, as
// Istio's agent serves it for prometheus.io annotations: the proxy's
// metrics, then the app's own, read from the app over the pod IP; an
// app that cannot be read leaves the proxy's part and says why in a
// comment.
func TestStatusPortMergesAppMetrics(t *testing.T) {
	podIP := netip.MustParseAddr("127.77.120.6")
	ln, err := net.Listen("tcp", net.JoinHostPort(podIP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/custom" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "# TYPE app_orders_total counter\napp_orders_total 7\n")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	am, err := ParsePrometheusAnnotations(fmt.Sprintf(`{"scrape":"true","port":"%d","path":"/custom"}`, port))
	if err != nil {
		t.Fatal(err)
	}
	proxy := func(w io.Writer) error {
		_, err := io.WriteString(w, "# TYPE istio_requests_total counter\nistio_requests_total{reporter=\"destination\"} 3\n")
		return err
	}
	stop, err := serveStatus(Options{Mode: Explicit, PodIP: podIP}, nil, proxy, am)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + podIP.String() + ":15020/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "# TYPE istio_requests_total counter\nistio_requests_total{reporter=\"destination\"} 3\n# TYPE app_orders_total counter\napp_orders_total 7\n"
	if string(b) != want {
		t.Errorf("merged view:\n%s\nwant:\n%s", b, want)
	}

	srv.Close()
	resp, err = http.Get("http://" + podIP.String() + ":15020/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "# TYPE istio_requests_total") || !strings.Contains(string(b), "# the app's metrics at") {
		t.Errorf("with the app down:\n%s", b)
	}

	for in, bad := range map[string]bool{`{"scrape":"false","port":"1"}`: false, `{"scrape":"true","port":"x"}`: true, `nope`: true} {
		am, err := ParsePrometheusAnnotations(in)
		if (err != nil) != bad || (!bad && am != nil) {
			t.Errorf("ParsePrometheusAnnotations(%s) = %v, %v", in, am, err)
		}
	}
}

package sidecar_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// The admin port of a running sidecar shows what it applied: config_dump
// with every type's version and resources, clusters with their endpoints,
// stats, and readiness on the health port.
func TestAdminShowsAppliedConfig(t *testing.T) {
	leak.Check(t)
	_, client := reviewsMesh(t, "127.77.33", 100, 0)
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	fetch := func(path string) string {
		t.Helper()
		resp, err := hc.Get("http://127.77.33.1:15000" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	var dump map[string]struct {
		Version   string                     `json:"version"`
		Resources map[string]json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal([]byte(fetch("/config_dump")), &dump); err != nil {
		t.Fatalf("config_dump is not JSON: %v", err)
	}
	for _, typ := range []string{"listeners", "routes", "clusters", "endpoints"} {
		if dump[typ].Version == "" || len(dump[typ].Resources) == 0 {
			t.Errorf("config_dump %s: version %q, %d resources", typ, dump[typ].Version, len(dump[typ].Resources))
		}
	}
	if _, ok := dump["listeners"].Resources["virtualOutbound"]; !ok {
		t.Errorf("config_dump lacks virtualOutbound")
	}
	clusters := fetch("/clusters")
	if !strings.Contains(clusters, "outbound|9080|v1|reviews.default.svc.cluster.local") || !strings.Contains(clusters, "127.77.33.2:9080") {
		t.Errorf("/clusters lacks the v1 subset's endpoint:\n%s", clusters)
	}
	meshtest.Get(t, client.Client(), "http://reviews:9080/", nil)
	if !strings.Contains(fetch("/stats"), "http.outbound.downstream_rq_2xx: ") {
		t.Errorf("/stats lacks the outbound request counters")
	}
	resp, err := hc.Get("http://127.77.33.1:15021/healthz/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("health: %d, want 200", resp.StatusCode)
	}
}

// Past its connection limit the forward proxy answers new connections 503
// and counts them, and serves the others as before.
func TestConnectionLimitAnswers503(t *testing.T) {
	leak.Check(t)
	const base = "127.77.34"
	m := meshtest.New(t, reviewsConfig(base, 100, 0))
	meshtest.Backend(t, base+".2:9080", "v1", nil)
	m.Sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"})
	client := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"}, func(o *sidecar.Options) { o.MaxConnections = 1 })
	held, err := net.Dial("tcp", base+".1:15001")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	meshtest.Eventually(t, 5*time.Second, func() string {
		if statsLine(t, client, "listener.virtualOutbound.downstream_cx_active") != "1" {
			return "the first connection is not being served yet"
		}
		return ""
	})
	c, err := net.Dial("tcp", base+".1:15001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("over the limit: %v, want a 503", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("over the limit: %d, want 503", resp.StatusCode)
	}
	if got := statsLine(t, client, "listener.virtualOutbound.downstream_cx_overflow"); got != "1" {
		t.Errorf("downstream_cx_overflow = %q, want 1", got)
	}
}

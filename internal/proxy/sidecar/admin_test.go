package sidecar_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/leak"
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
	get(t, client.client(), "http://reviews:9080/", nil)
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

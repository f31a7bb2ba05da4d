package sidecar_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// Retries are not in force yet (the router tries each request once), so
// the admin pages must not show retry stats as if retries happened or were
// limited: a user reading upstream_rq_retry_overflow: 0 would believe the
// retry circuit breaker works.
func TestAdminShowsNoRetryStats(t *testing.T) {
	leak.Check(t)
	_, client := reviewsMesh(t, "127.77.213", 100, 0)
	meshtest.Get(t, client.Client(), "http://reviews:9080/", nil)
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	for _, path := range []string{"/clusters", "/stats", "/stats/prometheus"} {
		resp, err := hc.Get("http://127.77.213.1:15000" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		// The page must list the cluster's other counters, or the check
		// below would pass on an empty page.
		if !strings.Contains(string(b), "upstream_cx_total") {
			t.Errorf("%s lacks upstream_cx_total:\n%s", path, b)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(line, "rq_retry") {
				t.Errorf("%s shows a retry stat although retries are not in force: %s", path, line)
			}
		}
	}
}

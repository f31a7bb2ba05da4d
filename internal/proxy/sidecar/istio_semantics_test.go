package sidecar_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// Scenario: reviews v1 and v2 behind sidecars, a VirtualService that
// sends queryParams {flag: {exact: ""}} to v2 and the rest to v1, and a
// client sidecar. The VirtualService reference documents exact: "" for a
// query parameter like "?key"; as istiod configures Envoy, it matches the
// empty value only. "?flag" and "?flag=" must reach v2; "?flag=abc" and no
// flag must reach v1.
func TestQueryParamExactEmptyThroughSidecars(t *testing.T) {
	leak.Check(t)
	const base = "127.117.1"
	cfg := reviewsConfig(base, 100, 0)
	cfg = strings.Replace(cfg, `  - match: [{headers: {end-user: {exact: jason}}}]`, `  - match: [{queryParams: {flag: {exact: ""}}}]`, 1)
	m := meshtest.New(t, cfg)
	meshtest.Backend(t, base+".2:9080", "v1", nil)
	meshtest.Backend(t, base+".3:9080", "v2", nil)
	m.Sidecar("reviews-v1", base+".2", map[string]string{"app": "reviews", "version": "v1"})
	m.Sidecar("reviews-v2", base+".3", map[string]string{"app": "reviews", "version": "v2"})
	client := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	c := client.Client()
	defer c.CloseIdleConnections()
	meshtest.Eventually(t, 10*time.Second, func() string {
		resp, err := c.Get("http://reviews:9080/?flag")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return ""
	})
	for _, tc := range []struct{ query, want string }{
		{"?flag", "v2"},
		{"?flag=", "v2"},
		{"?flag=abc", "v1"},
		{"?other=1", "v1"},
		{"", "v1"},
	} {
		resp, body := meshtest.Get(t, c, "http://reviews:9080/"+tc.query, nil)
		if resp.StatusCode != http.StatusOK || body != tc.want {
			t.Errorf("GET /%s answered %d by %q, want %s", tc.query, resp.StatusCode, body, tc.want)
		}
	}
}

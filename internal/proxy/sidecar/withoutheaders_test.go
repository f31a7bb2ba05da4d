package sidecar_test

import (
	"net/http"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// withoutHeaders refuses a request only when the header matches, so a
// request without the header takes the route, as Istio documents ("if a
// header is matched with a matching rule among withoutHeaders, the traffic
// becomes not matched"). Set up: reviews v1 and v2, a route to v2 for
// requests without user: test-user, the rest to v1. Sent: no header, the
// header with another value, the header with test-user. Back: v2, v2, v1
// (before, a request without the header fell through to v1).
func TestWithoutHeadersMatchesMissingHeader(t *testing.T) {
	leak.Check(t)
	_, c := versionsMesh(t, "127.97.2", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{withoutHeaders: {user: {exact: test-user}}}]
    route: [{destination: {host: reviews-v2}}]
  - route: [{destination: {host: reviews-v1}}]
`, []string{"v1", "v2"}, nil)
	for _, tc := range []struct {
		header map[string]string
		want   string
	}{{nil, "v2"}, {map[string]string{"user": "someone"}, "v2"}, {map[string]string{"user": "test-user"}, "v1"}} {
		resp, body := meshtest.Get(t, c, "http://reviews:9080/", tc.header)
		if resp.StatusCode != http.StatusOK || body != tc.want {
			t.Errorf("GET with %v: %d %q, want 200 from %s", tc.header, resp.StatusCode, body, tc.want)
		}
	}
}

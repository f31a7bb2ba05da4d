package sidecar_test

import (
	"net/http"
	"testing"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// Two DestinationRules for one host in one namespace are merged, as Istio
// documents: each rule's subsets get clusters. Set up: reviews v1 and v2,
// one rule defining subset v1 and another defining v2, a VirtualService
// sending user test-user to v2 and the rest to v1. Sent: a request with and
// one without the header. Back: v2 and v1 (before, the second rule was
// ignored and its subset had no cluster).
func TestDestinationRulesForOneHostMerge(t *testing.T) {
	leak.Check(t)
	_, c := versionsMesh(t, "127.97.1", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-a}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-b}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {user: {exact: test-user}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
`, []string{"v1", "v2"}, nil)
	for _, tc := range []struct {
		header map[string]string
		want   string
	}{{map[string]string{"user": "test-user"}, "v2"}, {nil, "v1"}} {
		resp, body := meshtest.Get(t, c, "http://reviews:9080/", tc.header)
		if resp.StatusCode != http.StatusOK || body != tc.want {
			t.Errorf("GET with %v: %d %q, want 200 from %s", tc.header, resp.StatusCode, body, tc.want)
		}
	}
}

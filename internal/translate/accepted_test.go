package translate_test

import (
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/translate"
)

// Config the validator accepts is translated with its meaning (issue 12);
// the end-to-end half of each case is in internal/proxy/sidecar's
// translatefix_test.go.

// A VirtualService route's timeout reaches the route; without one the
// timeout is 0 (none), Istio's default. grpc-go reads
// max_stream_duration instead, so proxyless clients get it there too.
func TestVirtualServiceTimeout(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /slow}}]
    timeout: 1.5s
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "ratings.default.svc.cluster.local:9080")
	if got := vh.Routes[0].GetRoute().GetTimeout().AsDuration(); got != 1500*time.Millisecond {
		t.Errorf("route with timeout: 1.5s has timeout %s", got)
	}
	if d := vh.Routes[1].GetRoute().GetTimeout(); d == nil || d.AsDuration() != 0 {
		t.Errorf("route without a timeout has timeout %v, want an explicit 0 (none)", d)
	}
	if vh.Routes[0].GetRoute().GetMaxStreamDuration() != nil {
		t.Errorf("sidecar route has max_stream_duration %v, want none (the proxy reads timeout)", vh.Routes[0].GetRoute().GetMaxStreamDuration())
	}

	g := translate.ForProxy(w, grpcProxy, nil)
	gvh := vhost(t, findRoute(t, g, "ratings.default.svc.cluster.local:9080"), "ratings.default.svc.cluster.local:9080")
	if got := gvh.Routes[0].GetRoute().GetMaxStreamDuration().GetMaxStreamDuration().AsDuration(); got != 1500*time.Millisecond {
		t.Errorf("grpc route max_stream_duration %s, want 1.5s", got)
	}
}

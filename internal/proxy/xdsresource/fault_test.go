package xdsresource_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

const faultVS = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-fault}
spec:
  hosts: [reviews-v2]
  http:
  - name: delayed
    match: [{uri: {prefix: /slow}}]
    timeout: 3s
    fault:
      delay: {fixedDelay: 200ms, percentage: {value: 12.5}}
    route: [{destination: {host: reviews-v2}}]
  - name: legacy
    match: [{uri: {prefix: /legacy}}]
    fault:
      delay: {fixedDelay: 1s, percent: 30}
    route: [{destination: {host: reviews-v2}}]
  - name: aborted
    match: [{uri: {prefix: /abort}}]
    fault:
      abort: {httpStatus: 503, percentage: {value: 50}}
    route: [{destination: {host: reviews-v2}}]
  - name: grpc
    fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
      delay: {fixedDelay: 1ms, percentage: {value: 0.0001}}
    route: [{destination: {host: reviews-v2}}]
`

// TestTranslatorFault follows a VirtualService fault from YAML through
// istiod's translation to what the proxy decodes: shares in millionths
// whatever the denominator, and no route timeout beside a fault.
func TestTranslatorFault(t *testing.T) {
	res := translate.ForProxy(world(t, faultVS), sidecarProxy, nil)
	got := decodedRoutes(t, res, "9080", "reviews-v2.default.svc.cluster.local:9080")
	want := map[string]*xdsresource.Fault{
		"delayed": {Delay: &xdsresource.FaultDelay{Fixed: 200 * time.Millisecond, Percent: 125_000}},
		"legacy":  {Delay: &xdsresource.FaultDelay{Fixed: time.Second, Percent: 300_000}},
		"aborted": {Abort: &xdsresource.FaultAbort{HTTPStatus: 503, Percent: 500_000}},
		"grpc": {
			Delay: &xdsresource.FaultDelay{Fixed: time.Millisecond, Percent: 1},
			Abort: &xdsresource.FaultAbort{GRPC: true, GRPCStatus: 14, Percent: xdsresource.Million},
		},
	}
	for name, w := range want {
		r, ok := got[name]
		if !ok {
			t.Fatalf("no route %q for reviews-v2 in route configuration 9080", name)
		}
		if d := cmp.Diff(w, r.Fault); d != "" {
			t.Errorf("route %s fault (-want +got):\n%s", name, d)
		}
		if r.Action == nil || r.Action.Timeout != 0 {
			t.Errorf("route %s: timeout %v beside a fault, want none as Istio", name, r.Action.Timeout)
		}
	}

	// The outbound connection manager carries the fault filter, which
	// the proxy accepts.
	for _, l := range res.Listeners {
		if _, _, err := decode(xdsresource.ListenerType, marshal(t, l)); err != nil {
			t.Fatalf("listener %s: %v", l.Name, err)
		}
	}
}

// TestFaultRefused: what the proxy cannot inject is NACKed, naming the
// field, not silently skipped.
func TestFaultRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		f    *httpfaultv3.HTTPFault
		want string
	}{
		{"header abort", &httpfaultv3.HTTPFault{Abort: &httpfaultv3.FaultAbort{ErrorType: &httpfaultv3.FaultAbort_HeaderAbort_{HeaderAbort: &httpfaultv3.FaultAbort_HeaderAbort{}}}}, "abort.header_abort"},
		{"upstream cluster", &httpfaultv3.HTTPFault{UpstreamCluster: "x"}, "upstream_cluster"},
		{"bad status", &httpfaultv3.HTTPFault{Abort: &httpfaultv3.FaultAbort{ErrorType: &httpfaultv3.FaultAbort_HttpStatus{HttpStatus: 99}}}, "abort.http_status"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := anypb.New(c.f)
			if err != nil {
				t.Fatal(err)
			}
			rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
				TypedPerFilterConfig: map[string]*anypb.Any{xdsresource.FaultFilterName: a},
			}}}}}
			_, _, err = decode(xdsresource.RouteType, marshal(t, rc))
			var xe *xdsresource.Error
			if !errors.As(err, &xe) || !strings.Contains(xe.Path, c.want) {
				t.Fatalf("err = %v, want a NACK at %s", err, c.want)
			}
		})
	}
}

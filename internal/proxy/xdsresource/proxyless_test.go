package xdsresource_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// trellis.proxyless marks a proxyless gRPC endpoint (no tunnel port);
// any other value, or none, is a sidecar's or a plain workload's.
func TestEndpointProxyless(t *testing.T) {
	ep := func(ip, proxyless string) *endpointv3.LbEndpoint {
		f := map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}
		if proxyless != "" {
			f["proxyless"] = structpb.NewStringValue(proxyless)
		}
		return &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 7070}}}}}},
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": {Fields: f}}},
		}
	}
	in := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
		ep("10.0.0.1", "true"), ep("10.0.0.2", ""), ep("10.0.0.3", "false"),
	}}}}
	got, err := xdsresource.DecodeClusterLoadAssignment(marshal(t, in))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, false} {
		if e := got.Localities[0].Endpoints[i]; e.Proxyless != want || e.TLSMode != "istio" {
			t.Errorf("endpoint %s: Proxyless %v TLSMode %q, want %v and istio", e.Address, e.Proxyless, e.TLSMode, want)
		}
	}
}

package xdsclient

import (
	"fmt"
	"log/slog"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// benchCLAs are n serialized assignments of ten endpoints each.
func benchCLAs(b *testing.B, n int) []wireResource {
	b.Helper()
	out := make([]wireResource, n)
	for i := range out {
		name := fmt.Sprintf("outbound|9080||svc-%d.default.svc.cluster.local", i)
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
		for j := range 10 {
			cla.Endpoints[0].LbEndpoints = append(cla.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
					SocketAddress: &corev3.SocketAddress{Address: fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080}}}}}},
			})
		}
		v, err := proto.Marshal(cla)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = wireResource{Name: name, Version: "1", TypeURL: xdsresource.EndpointType, Value: v, HasValue: true}
	}
	return out
}

// BenchmarkHandle is the client's side of an endpoint update: decoding,
// the new full set and handing it over, for the initial state of a
// thousand clusters and for one of them changing.
func BenchmarkHandle(b *testing.B) {
	const n = 1000
	all := benchCLAs(b, n)
	b.Run("initial-1000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c := benchClient(b)
			if err := c.handle(&deltaResponse{TypeURL: xdsresource.EndpointType, SystemVersionInfo: "1", Resources: all}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("delta-1-of-1000", func(b *testing.B) {
		c := benchClient(b)
		if err := c.handle(&deltaResponse{TypeURL: xdsresource.EndpointType, SystemVersionInfo: "1", Resources: all}); err != nil {
			b.Fatal(err)
		}
		one := &deltaResponse{TypeURL: xdsresource.EndpointType, SystemVersionInfo: "2", Resources: all[:1]}
		b.ReportAllocs()
		for b.Loop() {
			if err := c.handle(one); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchClient(b *testing.B) *client {
	c, err := newClient(Config{Server: "127.0.0.1:1", Node: testNode, Log: slog.New(slog.DiscardHandler)},
		Subscribe(xdsresource.EndpointResource, func(Update[*xdsresource.ClusterLoadAssignment]) error { return nil }))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

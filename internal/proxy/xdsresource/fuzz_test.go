package xdsresource_test

import (
	"fmt"
	"net/netip"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// seeds are the translator's real output for a sidecar, seed mesh and the
// extra config together, so the fuzzer starts from every shape Trellis sends.
func seeds(f *testing.F, pick func(*translate.Resources) []proto.Message) {
	for _, w := range []*translate.World{world(f), world(f, extraConfig...)} {
		for _, m := range pick(translate.ForProxy(w, sidecarProxy, nil)) {
			f.Add(marshal(f, m))
		}
	}
}

func listeners(r *translate.Resources) (out []proto.Message) {
	for _, m := range r.Listeners {
		out = append(out, m)
	}
	return out
}

func routes(r *translate.Resources) (out []proto.Message) {
	for _, m := range r.Routes {
		out = append(out, m)
	}
	return out
}

func clusters(r *translate.Resources) (out []proto.Message) {
	for _, m := range r.Clusters {
		out = append(out, m)
	}
	return out
}

func endpoints(r *translate.Resources) (out []proto.Message) {
	for _, m := range r.Endpoints {
		out = append(out, m)
	}
	return out
}

// fuzzDecode checks that decoding never panics, and that whatever decodes
// without error keeps its invariants. The seeds are kilobytes long, and
// minimizing each new input for the default 60 s can eat a whole run:
//
//	go test -run X -fuzz FuzzDecodeRoute -fuzztime 30s -fuzzminimizetime 2s ./internal/proxy/xdsresource
func fuzzDecode[T any](f *testing.F, pick func(*translate.Resources) []proto.Message, decode func([]byte) (*T, error), check func(*testing.T, *T)) {
	seeds(f, pick)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b)
		if err != nil {
			if v != nil {
				t.Fatalf("both a value and an error: %v", err)
			}
			return
		}
		check(t, v)
	})
}

func FuzzDecodeListener(f *testing.F) {
	fuzzDecode(f, listeners, xdsresource.DecodeListener, func(t *testing.T, l *xdsresource.Listener) {
		for i, fc := range l.FilterChains {
			if (fc.HTTP == nil) == (fc.TCP == nil) {
				t.Fatalf("filter_chains[%d]: want exactly one of HTTP and TCP", i)
			}
			if fc.HTTP != nil && fc.HTTP.RDSName == "" && fc.HTTP.RouteConfig == nil {
				t.Fatalf("filter_chains[%d]: HTTP without routes", i)
			}
			if fc.HTTP != nil && fc.HTTP.RouteConfig != nil {
				checkRoutes(t, fc.HTTP.RouteConfig)
			}
			if fc.TCP != nil && fc.TCP.Pick(0) == "" {
				t.Fatalf("filter_chains[%d]: TCP proxy without a cluster", i)
			}
		}
		for _, dst := range []string{"10.0.0.1:443", "[fd00::1]:80"} {
			l.ChainFor(netip.MustParseAddrPort(dst), "a.example.com")
		}
	})
}

func FuzzDecodeRoute(f *testing.F) {
	fuzzDecode(f, routes, xdsresource.DecodeRouteConfig, checkRoutes)
}

func checkRoutes(t *testing.T, rc *xdsresource.RouteConfig) {
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			n := 0
			if r.Action != nil {
				n++
				var total uint64
				for _, c := range r.Action.Clusters {
					total += uint64(c.Weight)
				}
				if total == 0 || total != r.Action.TotalWeight {
					t.Fatalf("route %q: total weight %d, clusters sum to %d", r.Name, r.Action.TotalWeight, total)
				}
			}
			if r.Redirect != nil {
				n++
			}
			if r.Direct != nil {
				n++
			}
			if n != 1 {
				t.Fatalf("route %q has %d actions", r.Name, n)
			}
			if r.Match.PathKind == xdsresource.PathRegex && r.Match.PathRegex == nil {
				t.Fatalf("route %q: regex path without a regexp", r.Name)
			}
		}
	}
}

func FuzzDecodeCluster(f *testing.F) {
	fuzzDecode(f, clusters, xdsresource.DecodeCluster, func(t *testing.T, c *xdsresource.Cluster) {
		if c.ConnectTimeout < 0 || c.IdleTimeout < 0 {
			t.Fatalf("negative timeout: %+v", c)
		}
		if c.LoadAssignment != nil {
			checkCLA(t, c.LoadAssignment)
		}
	})
}

func FuzzDecodeCLA(f *testing.F) {
	f.Add(marshal(f, typicalCLA(10)))
	fuzzDecode(f, endpoints, xdsresource.DecodeClusterLoadAssignment, checkCLA)
}

func checkCLA(t *testing.T, cla *xdsresource.ClusterLoadAssignment) {
	for _, l := range cla.Localities {
		for _, e := range l.Endpoints {
			if e.Weight == 0 || e.Address == "" || e.Port > 65535 {
				t.Fatalf("bad endpoint %+v", e)
			}
		}
	}
}

// typicalCLA is a service's endpoints as Trellis sends them: one
// locality, healthy endpoints with weights and workload identity.
func typicalCLA(n int) *endpointv3.ClusterLoadAssignment {
	loc := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Region: "us-east1", Zone: "us-east1-b"}, LoadBalancingWeight: wrapperspb.UInt32(uint32(n))}
	for i := range n {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr(fmt.Sprintf("10.244.%d.%d", i/250, i%250+1), 9080)}},
			HealthStatus:   corev3.HealthStatus_HEALTHY, LoadBalancingWeight: wrapperspb.UInt32(1),
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": {Fields: map[string]*structpb.Value{
				"workload":       structpb.NewStringValue(fmt.Sprintf("reviews-v1-%d", i)),
				"namespace":      structpb.NewStringValue("default"),
				"serviceAccount": structpb.NewStringValue("bookinfo-reviews"),
			}}}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||reviews.default.svc.cluster.local", Endpoints: []*endpointv3.LocalityLbEndpoints{loc}}
}

func BenchmarkDecodeCLA(b *testing.B) {
	for _, n := range []int{10, 100} {
		buf := marshal(b, typicalCLA(n))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := xdsresource.DecodeClusterLoadAssignment(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeCLAAllocs bounds the garbage an endpoint update makes: the
// result's three blocks (assignment, localities, endpoints), the cluster
// name, the locality's region and zone, the first endpoint's namespace and
// service account, and per endpoint only its address and workload name
// (later endpoints share the namespace and service account strings).
func TestDecodeCLAAllocs(t *testing.T) {
	const n = 50
	buf := marshal(t, typicalCLA(n))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := xdsresource.DecodeClusterLoadAssignment(buf); err != nil {
			t.Fatal(err)
		}
	})
	if want := float64(8 + 2*n); allocs > want {
		t.Fatalf("%v allocations decoding %d endpoints, want <= %v", allocs, n, want)
	}
}

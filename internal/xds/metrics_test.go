package xds

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/status"
)

// Over both protocols, one cluster response is one cds push, and its
// NACK one cds reject: the total, and istiod's gauge for the node and
// the NACK's code, which goes with the stream.
func TestMetricsCountPushesAndRejects(t *testing.T) {
	for _, mode := range []string{"sotw", "delta"} {
		t.Run(mode, func(t *testing.T) {
			e := start(t)
			reg := prometheus.NewRegistry()
			if err := e.srv.RegisterMetrics(reg); err != nil {
				t.Fatal(err)
			}
			id := "sidecar~127.0.0.6~sleep-1.default~default.svc.cluster.local"
			node := testNode(id, "")
			nack := &status.Status{Code: 3, Message: "rejected for the test"}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			switch mode {
			case "sotw":
				st, err := dial(t, e.addr).StreamAggregatedResources(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
					t.Fatal(err)
				}
				r, err := st.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: "", ResponseNonce: r.GetNonce(), ErrorDetail: nack}); err != nil {
					t.Fatal(err)
				}
			case "delta":
				st, err := dial(t, e.addr).DeltaAggregatedResources(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
					t.Fatal(err)
				}
				r, err := st.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce(), ErrorDetail: nack}); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string]float64{
				`pilot_xds_pushes{type="cds"}`:                    1,
				`pilot_total_xds_rejects{type="cds"}`:             1,
				`pilot_xds_cds_reject{err="3",node="` + id + `"}`: 1,
				`pilot_xds{version="unknown"}`:                    1,
			}
			waitFor(t, func() bool { return cmp.Diff(want, gather(t, reg, want)) == "" }, "the push and the NACK counted")
			if diff := cmp.Diff(want, gather(t, reg, want)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			cancel()
			waitFor(t, func() bool {
				got := gather(t, reg, nil)
				_, kept := got[`pilot_xds_cds_reject{err="3",node="`+id+`"}`]
				return got[`pilot_xds{version="unknown"}`] == 0 && !kept
			}, "the proxy and its reject gauge gone with the stream")
		})
	}
}

// gather reads reg into name{labels} -> value, only keys of want when
// want is not nil.
func gather(t *testing.T, reg *prometheus.Registry, want map[string]float64) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := f.GetName()
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if want != nil {
				if _, ok := want[key]; !ok {
					continue
				}
			}
			out[key] = v
		}
	}
	return out
}

package xdsresource_test

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// DestinationRule warmup and localityLbSetting as istiod writes them
// (slow_start_config, locality_weighted_lb_config), decoded by the proxy.
func TestWarmupAndLocalityDecoded(t *testing.T) {
	dr := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-v1}
spec:
  host: reviews-v1
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      warmup: {duration: 20s, aggression: 1.5, minimumPercent: 30}
      localityLbSetting:
        distribute: [{from: "*", to: {"*": 100}}]
  subsets:
  - name: lr
    labels: {app: reviews}
    trafficPolicy:
      loadBalancer: {warmupDurationSecs: 7s}
`
	res := translate.ForProxy(world(t, dr), sidecarProxy, nil)
	got := map[string]*xdsresource.Cluster{}
	for _, c := range res.Clusters {
		if strings.HasSuffix(c.GetName(), "|reviews-v1.default.svc.cluster.local") {
			dc, err := xdsresource.DecodeCluster(marshal(t, c))
			if err != nil {
				t.Fatalf("%s: %v", c.GetName(), err)
			}
			got[c.GetName()] = dc
		}
	}
	top := got["outbound|9080||reviews-v1.default.svc.cluster.local"]
	if top == nil {
		t.Fatalf("no reviews-v1 cluster among %v", got)
	}
	if diff := cmp.Diff(&xdsresource.SlowStart{Window: 20 * time.Second, Aggression: 1.5, MinWeightPercent: 30}, top.SlowStart); diff != "" || !top.LocalityWeighted {
		t.Errorf("reviews-v1: slow start (-want +got):\n%s\nlocality weighted %v, want true", diff, top.LocalityWeighted)
	}
	// The subset's loadBalancer replaces the top-level one, distribute
	// included; the deprecated field leaves Envoy's defaults.
	lr := got["outbound|9080|lr|reviews-v1.default.svc.cluster.local"]
	if diff := cmp.Diff(&xdsresource.SlowStart{Window: 7 * time.Second, Aggression: 1, MinWeightPercent: 10}, lr.SlowStart); diff != "" || lr.LocalityWeighted || lr.LBPolicy != xdsresource.LBLeastRequest {
		t.Errorf("reviews-v1 lr: slow start (-want +got):\n%s\nlocality weighted %v, policy %v", diff, lr.LocalityWeighted, lr.LBPolicy)
	}
}

func TestSlowStartErrors(t *testing.T) {
	for _, tc := range []struct {
		ss   *clusterv3.Cluster_SlowStartConfig
		want string
	}{
		{&clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(time.Second), Aggression: &corev3.RuntimeDouble{DefaultValue: 0, RuntimeKey: "k"}},
			"round_robin_lb_config.slow_start_config.aggression.default_value: must be > 0, got 0"},
		{&clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(time.Second), MinWeightPercent: &typev3.Percent{Value: 150}},
			"round_robin_lb_config.slow_start_config.min_weight_percent.value: must be in [0, 100], got 150"},
	} {
		c := &clusterv3.Cluster{Name: "c", LbPolicy: clusterv3.Cluster_ROUND_ROBIN,
			LbConfig: &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{SlowStartConfig: tc.ss}}}
		_, err := xdsresource.DecodeCluster(marshal(t, c))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %s", err, tc.want)
		}
	}
}

package translate_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/translate"
)

// localityMesh is a Service "echo" with five pods spread over regions,
// zones and subzones (given by the pods' topology labels, and one by
// istio-locality), plus the DestinationRule policy given.
func localityMesh(t *testing.T, policy string) *translate.World {
	t.Helper()
	pods := []struct{ name, ip, labels string }{
		{"a", "10.0.0.1", "topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1, topology.istio.io/subzone: s1"},
		{"b", "10.0.0.2", "topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1, topology.istio.io/subzone: s2"},
		{"c", "10.0.0.3", "istio-locality: r1.z2"},
		{"d", "10.0.0.4", "topology.kubernetes.io/region: r2, topology.kubernetes.io/zone: z9"},
		{"e", "10.0.0.5", "topology.kubernetes.io/region: r3, topology.kubernetes.io/zone: z9"},
	}
	y := `apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80}]
`
	for _, p := range pods {
		y += fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata: {name: %s, labels: {app: echo, %s}}
spec: {containers: [{name: app, image: x}]}
status: {podIP: %s}
`, p.name, p.labels, p.ip)
	}
	if policy != "" {
		y += `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy:
` + policy
	}
	return world(t, t.TempDir(), y)
}

// clientAt is a sidecar whose pod carries the locality's topology labels.
func clientAt(region, zone, subzone string) *translate.Proxy {
	l := map[string]string{"app": "client"}
	if region != "" {
		l[translate.LabelRegion] = region
	}
	if zone != "" {
		l[translate.LabelZone] = zone
	}
	if subzone != "" {
		l[translate.LabelSubzone] = subzone
	}
	return &translate.Proxy{ID: "sidecar~10.9.0.1~client.default~default.svc.cluster.local", IP: "10.9.0.1", Pod: "client", Namespace: "default", Labels: l, InterceptionMode: "NONE"}
}

const echoCluster = "outbound|80||echo.default.svc.cluster.local"

// echoAssignment summarises echo's load assignment for p: per priority,
// the endpoints' last octets with their locality's weight, e.g.
// "0: a(1)", sorted.
func echoAssignment(t *testing.T, w *translate.World, p *translate.Proxy) ([]string, *clusterv3.Cluster) {
	t.Helper()
	r := translate.ForProxy(w, p, nil)
	var cla *endpointv3.ClusterLoadAssignment
	for _, e := range r.Endpoints {
		if e.GetClusterName() == echoCluster {
			cla = e
		}
	}
	var c *clusterv3.Cluster
	for _, cl := range r.Clusters {
		if cl.GetName() == echoCluster {
			c = cl
		}
	}
	if cla == nil || c == nil {
		t.Fatalf("no cluster or assignment %s", echoCluster)
	}
	name := map[string]string{"10.0.0.1": "a", "10.0.0.2": "b", "10.0.0.3": "c", "10.0.0.4": "d", "10.0.0.5": "e"}
	byPrio := map[uint32][]string{}
	for _, le := range cla.GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			addr := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			byPrio[le.GetPriority()] = append(byPrio[le.GetPriority()], fmt.Sprintf("%s(%d)", name[addr], le.GetLoadBalancingWeight().GetValue()))
		}
	}
	var out []string
	for p, eps := range byPrio {
		sort.Strings(eps)
		out = append(out, fmt.Sprintf("%d: %s", p, strings.Join(eps, " ")))
	}
	sort.Strings(out)
	return out, c
}

// "failover ... Optional: only one of distribute, failover or
// failoverPriority can be set. Explicitly specify the region traffic will
// land on when endpoints in local region becomes unhealthy." Without
// settings, Istio's default (MeshConfig localityLbSetting enabled) orders
// endpoints by how much of the client's locality they share, once the
// DestinationRule has outlier detection (and only then).
func TestLocalityFailoverPriorities(t *testing.T) {
	withOutlier := "    outlierDetection: {consecutive5xxErrors: 1}\n"
	cases := []struct {
		name   string
		policy string
		client *translate.Proxy
		want   []string
	}{{
		name:   "default failover from r1/z1/s1",
		policy: withOutlier,
		client: clientAt("r1", "z1", "s1"),
		want:   []string{"0: a(1)", "1: b(1)", "2: c(1)", "3: d(1) e(1)"},
	}, {
		name:   "default failover from r1/z2",
		policy: withOutlier,
		client: clientAt("r1", "z2", ""),
		want:   []string{"0: c(1)", "1: a(1) b(1)", "2: d(1) e(1)"},
	}, {
		name:   "failover names r3 for r1",
		policy: withOutlier + "    loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r3}]}}\n",
		client: clientAt("r1", "z1", "s1"),
		want:   []string{"0: a(1)", "1: b(1)", "2: c(1)", "3: e(1)", "4: d(1)"},
	}, {
		name:   "no outlier detection: no failover, one priority",
		policy: "    loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r3}]}}\n",
		client: clientAt("r1", "z1", "s1"),
		want:   []string{"0: a(1) b(1) c(1) d(1) e(1)"},
	}, {
		name:   "disabled",
		policy: withOutlier + "    loadBalancer: {localityLbSetting: {enabled: false}}\n",
		client: clientAt("r1", "z1", "s1"),
		want:   []string{"0: a(1) b(1) c(1) d(1) e(1)"},
	}, {
		name:   "client without locality prefers endpoints without one",
		policy: withOutlier,
		client: clientAt("", "", ""),
		want:   []string{"0: a(1) b(1) c(1) d(1) e(1)"},
	}, {
		name:   "failoverPriority on region and zone",
		policy: withOutlier + "    loadBalancer: {localityLbSetting: {failoverPriority: [topology.kubernetes.io/region, topology.kubernetes.io/zone]}}\n",
		client: clientAt("r1", "z1", "s9"),
		want:   []string{"0: a(1) b(1)", "1: c(1)", "2: d(1) e(1)"},
	}, {
		name:   "failoverPriority with a value override",
		policy: withOutlier + "    loadBalancer: {localityLbSetting: {failoverPriority: [topology.kubernetes.io/region=r2]}}\n",
		client: clientAt("r1", "z1", "s1"),
		want:   []string{"0: d(1)", "1: a(1) b(1) c(1) e(1)"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := echoAssignment(t, localityMesh(t, tc.policy), tc.client)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("priorities (-want +got):\n%s", diff)
			}
		})
	}
}

// "distribute: Optional: only one of distribute, failover or
// failoverPriority can be set. Explicitly specify loadbalancing weight
// across different zones and geographical locations." The first entry
// whose from matches the client applies; localities it does not name get
// no traffic; a wildcard's weight is split by the localities' own
// weights. It needs no outlier detection, and the cluster asks for
// locality-weighted balancing.
func TestLocalityDistribute(t *testing.T) {
	policy := `    loadBalancer:
      localityLbSetting:
        distribute:
        - {from: r1/z1/*, to: {"r1/z1/*": 80, "r2/*": 20}}
        - {from: r1/*, to: {"r1/*": 100}}
`
	w := localityMesh(t, policy)
	got, c := echoAssignment(t, w, clientAt("r1", "z1", "s1"))
	want := []string{"0: a(40) b(40) d(20)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("from r1/z1 (-want +got):\n%s", diff)
	}
	if c.GetCommonLbConfig().GetLocalityWeightedLbConfig() == nil {
		t.Error("cluster lacks common_lb_config.locality_weighted_lb_config")
	}
	got, _ = echoAssignment(t, w, clientAt("r1", "z2", ""))
	want = []string{"0: a(34) b(34) c(34)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("from r1/z2 (-want +got):\n%s", diff)
	}
	// No entry matches r3: the assignment is as without the setting.
	got, _ = echoAssignment(t, w, clientAt("r3", "z9", ""))
	want = []string{"0: a(1) b(1) c(1) d(1) e(1)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("from r3 (-want +got):\n%s", diff)
	}
}

// Proxies whose assignments differ get their own scope; proxies of one
// locality share one, and without locality settings a namespace's proxies
// share one whatever their locality.
func TestLocalityScopes(t *testing.T) {
	plain := localityMesh(t, "")
	if a, b := plain.ScopeKey(clientAt("r1", "z1", "")), plain.ScopeKey(clientAt("r2", "z9", "")); a != b {
		t.Errorf("without locality settings the scopes differ: %q, %q", a, b)
	}
	w := localityMesh(t, "    outlierDetection: {consecutive5xxErrors: 1}\n")
	if a, b := w.ScopeKey(clientAt("r1", "z1", "")), w.ScopeKey(clientAt("r2", "z9", "")); a == b {
		t.Errorf("proxies in r1/z1 and r2/z9 share scope %q", a)
	}
	other := clientAt("r1", "z1", "")
	other.Labels["app"] = "other"
	if a, b := w.ScopeKey(clientAt("r1", "z1", "")), w.ScopeKey(other); a != b {
		t.Errorf("two proxies of r1/z1 have scopes %q and %q", a, b)
	}
}

// "warmupDurationSecs: Represents the warmup duration of Service. If set,
// the newly created endpoint of service remains in warmup mode starting
// from its creation time for the duration of this window and Istio
// progressively increases amount of traffic for that endpoint instead of
// sending proportional amount of traffic. This should be enabled for
// services that require warm up time to serve full production load with
// reasonable latency. Please note that this is most effective when few
// new endpoints come up like scale event in Kubernetes. When all the
// endpoints are relatively new like new deployment, this is not very
// effective as all endpoints end up getting same amount of requests.
// Currently this is only supported for ROUND_ROBIN and LEAST_REQUEST load
// balancers." warmup sets the aggression and minimum percent too (Envoy's
// defaults 1.0 and 10% when unset).
func TestWarmup(t *testing.T) {
	cases := []struct {
		lb   string
		want string
	}{
		{"{warmupDurationSecs: 30s}", "LEAST_REQUEST window=30s aggression=<nil> min=<nil>"},
		{"{simple: ROUND_ROBIN, warmupDurationSecs: 30s}", "ROUND_ROBIN window=30s aggression=<nil> min=<nil>"},
		{"{simple: LEAST_REQUEST, warmup: {duration: 10s}}", "LEAST_REQUEST window=10s aggression=1 min=10"},
		{"{simple: ROUND_ROBIN, warmup: {duration: 10s, aggression: 2, minimumPercent: 25}}", "ROUND_ROBIN window=10s aggression=2 min=25"},
		{"{simple: RANDOM, warmupDurationSecs: 30s}", "RANDOM none"},
		{"{consistentHash: {httpHeaderName: x}, warmupDurationSecs: 30s}", "RING_HASH none"},
	}
	for _, tc := range cases {
		_, c := echoAssignment(t, localityMesh(t, "    loadBalancer: "+tc.lb+"\n"), clientAt("", "", ""))
		ss := c.GetRoundRobinLbConfig().GetSlowStartConfig()
		if ss == nil {
			ss = c.GetLeastRequestLbConfig().GetSlowStartConfig()
		}
		got := c.GetLbPolicy().String() + " none"
		if ss != nil {
			var agg, min any = "<nil>", "<nil>"
			if ss.GetAggression() != nil {
				agg = ss.GetAggression().GetDefaultValue()
			}
			if ss.GetMinWeightPercent() != nil {
				min = ss.GetMinWeightPercent().GetValue()
			}
			got = fmt.Sprintf("%s window=%s aggression=%v min=%v", c.GetLbPolicy(), ss.GetSlowStartWindow().AsDuration(), agg, min)
		}
		if got != tc.want {
			t.Errorf("loadBalancer %s: cluster %s, want %s", tc.lb, got, tc.want)
		}
	}
}

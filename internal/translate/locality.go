package translate

import (
	"math"
	"sort"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/registry"
)

// Locality load balancing is done as istiod does it, in the control plane:
// each proxy's load assignments are rewritten relative to the proxy's own
// locality (priorities for failover, locality weights for distribute), so
// the sidecar only has to honour priorities and locality weights. A
// proxy's locality is that of its pod, read from the labels it sends.

// Topology labels, as Kubernetes and Istio name them. Istio reads the
// first two from the pod's node; Trellis has no nodes and reads them from
// the pod, which is also where they are on a WorkloadEntry's labels.
const (
	LabelRegion  = "topology.kubernetes.io/region"
	LabelZone    = "topology.kubernetes.io/zone"
	LabelSubzone = "topology.istio.io/subzone"
	// labelNetwork is ignored as the first failoverPriority label when it
	// differs, as Istio does (Trellis has one network).
	labelNetwork = "topology.istio.io/network"
	// istioLocalityLabel is Istio's pod label for the whole locality,
	// dot-separated ("us-east.us-east-1a"); it wins over the topology
	// labels.
	istioLocalityLabel = "istio-locality"
)

// LocalityOf is the locality a workload's labels give it: istio-locality
// (dots for slashes), else the topology labels; nil when it has none.
func LocalityOf(labels map[string]string) *corev3.Locality {
	if l := labels[istioLocalityLabel]; l != "" {
		return parseLocality(strings.ReplaceAll(l, ".", "/"))
	}
	r, z, s := labels[LabelRegion], labels[LabelZone], labels[LabelSubzone]
	if r == "" && z == "" && s == "" {
		return nil
	}
	return &corev3.Locality{Region: r, Zone: z, SubZone: s}
}

// localityIndex tells whether any load assignment of the world depends on
// the proxy asking, and on which of its labels besides its locality.
type localityIndex struct {
	once      sync.Once
	sensitive bool
	labels    []string // failoverPriority label names, sorted
}

// localityScopeKey is the part of World.ScopeKey that keeps proxies whose
// load assignments differ apart: their locality and the values of the
// labels some failoverPriority names. It is empty unless some
// DestinationRule has outlier detection or a localityLbSetting, so
// without them a namespace's proxies still share one translation; proxies
// of one locality always share theirs.
func (w *World) localityScopeKey(p *Proxy) string {
	ix := &w.locality
	ix.once.Do(func() { w.indexLocality(ix) })
	if !ix.sensitive || p.Generator == GeneratorGRPC {
		return ""
	}
	self := LocalityOf(p.Labels)
	var b strings.Builder
	b.WriteString("|locality=")
	b.WriteString(self.GetRegion() + "/" + self.GetZone() + "/" + self.GetSubZone())
	if len(ix.labels) > 0 {
		labels := topologyLabels(p.Labels, self)
		for _, k := range ix.labels {
			b.WriteString("|" + k + "=" + labels[k])
		}
	}
	return b.String()
}

func (w *World) indexLocality(ix *localityIndex) {
	seen := map[string]bool{}
	note := func(l *networking.LocalityLoadBalancerSetting) {
		for _, fp := range l.GetFailoverPriority() {
			name, _, _ := strings.Cut(fp, "=")
			if !seen[name] {
				seen[name] = true
				ix.labels = append(ix.labels, name)
			}
		}
	}
	note(w.Mesh.GetLocalityLbSetting())
	policy := func(p *networking.TrafficPolicy) {
		if p == nil {
			return
		}
		if p.GetOutlierDetection() != nil || p.GetLoadBalancer().GetLocalityLbSetting() != nil {
			ix.sensitive = true
		}
		note(p.GetLoadBalancer().GetLocalityLbSetting())
		for _, pl := range p.GetPortLevelSettings() {
			if pl.GetOutlierDetection() != nil || pl.GetLoadBalancer().GetLocalityLbSetting() != nil {
				ix.sensitive = true
			}
			note(pl.GetLoadBalancer().GetLocalityLbSetting())
		}
	}
	for _, o := range w.dr {
		dr := o.Spec.(*networking.DestinationRule)
		policy(dr.GetTrafficPolicy())
		for _, ss := range dr.GetSubsets() {
			policy(ss.GetTrafficPolicy())
		}
	}
	sort.Strings(ix.labels)
}

// effectiveLocalityLB is istiod's GetEffectiveLbSetting for locality
// settings: the DestinationRule's (nil when it disables them), else the
// MeshConfig's, which Istio's default mesh config enables with no other
// settings. zoneAwareLbSetting is not in force and counts as none.
func (w *World) effectiveLocalityLB(lb *networking.LoadBalancerSettings) *networking.LocalityLoadBalancerSetting {
	if l := lb.GetLocalityLbSetting(); l != nil {
		if l.GetEnabled() != nil && !l.GetEnabled().GetValue() {
			return nil
		}
		return l
	}
	m := w.Mesh.GetLocalityLbSetting()
	if m == nil {
		return defaultMeshLocality
	}
	if m.GetEnabled() != nil && !m.GetEnabled().GetValue() {
		return nil
	}
	return m
}

// defaultMeshLocality is Istio's default MeshConfig localityLbSetting.
var defaultMeshLocality = &networking.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(true)}

// applyLocalityLB is istiod's LocalityLBSettings.ApplyToCluster: it marks
// c (when given) for locality-weighted balancing when Istio would, and
// rewrites cla (when given: an EDS load assignment, or c's inline one)
// for this proxy's locality. instances and subset are what loadAssignment
// built cla from, so each locality's endpoints can be told apart by their
// labels for failoverPriority.
func (t *translation) applyLocalityLB(c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment, policy *networking.TrafficPolicy, instances []*registry.Instance, subset map[string]string) {
	if t.proxy.Generator == GeneratorGRPC {
		// grpc-go has priorities and locality weights of its own, but
		// Istio's proxyless clients get no per-proxy assignments from
		// Trellis yet.
		return
	}
	l := t.w.effectiveLocalityLB(policy.GetLoadBalancer())
	if l == nil {
		return
	}
	failover := policy.GetOutlierDetection() != nil
	if c != nil && (l.GetDistribute() != nil || (failover && (l.GetFailover() != nil || l.GetFailoverPriority() != nil))) {
		if c.CommonLbConfig == nil {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}
		c.CommonLbConfig.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
		}
	}
	if cla == nil {
		return
	}
	self := LocalityOf(t.proxy.Labels)
	switch {
	case l.GetDistribute() != nil:
		applyLocalityWeights(self, cla, l.GetDistribute())
	case failover && len(l.GetFailoverPriority()) > 0:
		applyFailoverPriorities(cla, groupInstances(instances, subset), topologyLabels(t.proxy.Labels, self), l.GetFailoverPriority())
		if len(l.GetFailover()) > 0 {
			applyLocalityFailover(self, cla, l.GetFailover())
		}
	case failover:
		applyLocalityFailover(self, cla, l.GetFailover())
	}
}

// localityMatch is Istio's: rule is "region[/zone[/subzone]]", each part
// "*" for any; a missing zone or subzone matches any.
func localityMatch(l *corev3.Locality, rule string) bool {
	parts := strings.SplitN(rule, "/", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return (parts[0] == "*" || parts[0] == l.GetRegion()) &&
		(parts[1] == "*" || parts[1] == "" || parts[1] == l.GetZone()) &&
		(parts[2] == "*" || parts[2] == "" || parts[2] == l.GetSubZone())
}

// lbPriority is how far an endpoint's locality is from the proxy's: 0 all
// of region, zone and subzone equal, 1 region and zone, 2 region, 3 none.
func lbPriority(self, ep *corev3.Locality) int {
	switch {
	case self.GetRegion() != ep.GetRegion():
		return 3
	case self.GetZone() != ep.GetZone():
		return 2
	case self.GetSubZone() != ep.GetSubZone():
		return 1
	}
	return 0
}

// applyLocalityWeights is distribute: the first entry whose from matches
// the proxy gives each locality its weight (split among the localities a
// wildcard covers by their own weights, rounded up), and the endpoints of
// localities it does not name are left out.
func applyLocalityWeights(self *corev3.Locality, cla *endpointv3.ClusterLoadAssignment, distribute []*networking.LocalityLoadBalancerSetting_Distribute) {
	for _, d := range distribute {
		if d == nil || !localityMatch(self, d.GetFrom()) {
			continue
		}
		unmatched := make([]bool, len(cla.Endpoints))
		for i := range unmatched {
			unmatched[i] = true
		}
		// Map order must not matter: each locality is claimed by the
		// first "to" that matches it in sorted order (validation refuses
		// overlapping keys, so there is at most one).
		keys := make([]string, 0, len(d.GetTo()))
		for k := range d.GetTo() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, to := range keys {
			weight := d.GetTo()[to]
			var idx []int
			var orig []uint32
			var total uint64
			for i, le := range cla.Endpoints {
				if !unmatched[i] || !localityMatch(le.GetLocality(), to) {
					continue
				}
				unmatched[i] = false
				w := uint32(1)
				if le.GetLoadBalancingWeight() != nil {
					w = le.GetLoadBalancingWeight().GetValue()
				}
				idx, orig = append(idx, i), append(orig, w)
				total += uint64(w)
			}
			for j, i := range idx {
				if v := float64(uint64(orig[j])*uint64(weight)) / float64(total); v > 0 {
					cla.Endpoints[i].LoadBalancingWeight = wrapperspb.UInt32(uint32(math.Ceil(v)))
				}
			}
		}
		for i, u := range unmatched {
			if u {
				cla.Endpoints[i].LbEndpoints = nil
			}
		}
		return
	}
}

// applyLocalityFailover sets each locality's priority by how much of the
// proxy's locality it shares (lbPriority); another region is priority 3,
// or 4 when a failover entry from the proxy's region names a different
// one. Priorities already set (failoverPriority) stay the major order.
// The result is renumbered 0..N without gaps, as Envoy needs.
func applyLocalityFailover(self *corev3.Locality, cla *endpointv3.ClusterLoadAssignment, failover []*networking.LocalityLoadBalancerSetting_Failover) {
	for _, le := range cla.Endpoints {
		p := lbPriority(self, le.GetLocality())
		if p == 3 {
			for _, f := range failover {
				if f.GetFrom() == self.GetRegion() {
					if le.GetLocality().GetRegion() != f.GetTo() {
						p = 4
					}
					break
				}
			}
		}
		le.Priority = le.Priority*5 + uint32(p)
	}
	compactPriorities(cla.Endpoints)
}

// compactPriorities renumbers priorities 0..N in their order.
func compactPriorities(les []*endpointv3.LocalityLbEndpoints) {
	var ps []uint32
	for _, le := range les {
		ps = append(ps, le.Priority)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	rank := map[uint32]uint32{}
	for _, p := range ps {
		if _, ok := rank[p]; !ok {
			rank[p] = uint32(len(rank))
		}
	}
	for _, le := range les {
		le.Priority = rank[le.Priority]
	}
}

// groupInstances lists, per locality of loadAssignment's output and in
// the same order, the instances behind its endpoints.
func groupInstances(instances []*registry.Instance, subset map[string]string) [][]*registry.Instance {
	index := map[string]int{}
	var out [][]*registry.Instance
	for _, in := range instances {
		if !in.Ready || !labelsMatch(subset, in.Labels) {
			continue
		}
		i, ok := index[in.Locality]
		if !ok {
			i = len(out)
			index[in.Locality] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], in)
	}
	return out
}

// topologyLabels adds to a workload's labels the topology labels of its
// locality, as Istio augments both proxies' and endpoints' labels, so
// failoverPriority can name them whichever way the locality was given.
func topologyLabels(labels map[string]string, l *corev3.Locality) map[string]string {
	out := make(map[string]string, len(labels)+3)
	for k, v := range labels {
		out[k] = v
	}
	if l != nil {
		out[LabelRegion], out[LabelZone], out[LabelSubzone] = l.GetRegion(), l.GetZone(), l.GetSubZone()
	}
	return out
}

// applyFailoverPriorities splits each locality by how many of the
// failoverPriority labels (in order) each endpoint shares with the proxy:
// all of them is priority 0, none the last. "label=value" compares the
// endpoint with value instead of the proxy's label. A differing network
// label in first place is not a mismatch, but ranks the endpoint after
// every endpoint on the proxy's network.
func applyFailoverPriorities(cla *endpointv3.ClusterLoadAssignment, groups [][]*registry.Instance, proxyLabels map[string]string, priorities []string) {
	if len(proxyLabels) == 0 || len(groups) != len(cla.Endpoints) {
		return
	}
	names := make([]string, len(priorities))
	override := map[string]string{}
	for i, p := range priorities {
		name, value, ok := strings.Cut(p, "=")
		names[i] = name
		if ok {
			override[name] = value
		}
	}
	lowest := len(priorities)
	network := lowest > 0 && names[0] == labelNetwork
	var out []*endpointv3.LocalityLbEndpoints
	for gi, le := range cla.Endpoints {
		byPrio := map[int][]int{}
		for i, in := range groups[gi] {
			if i >= len(le.LbEndpoints) {
				break
			}
			labels := topologyLabels(in.Labels, parseLocalityOrNil(in.Locality))
			prio, adjust := 0, 0
			for j, name := range names {
				want, ok := override[name]
				if !ok {
					want = proxyLabels[name]
				}
				if want != labels[name] {
					if j == 0 && network {
						adjust = lowest
						continue
					}
					prio = lowest - j
					break
				}
			}
			byPrio[prio+adjust] = append(byPrio[prio+adjust], i)
		}
		prios := make([]int, 0, len(byPrio))
		for p := range byPrio {
			prios = append(prios, p)
		}
		sort.Ints(prios)
		for _, p := range prios {
			split := &endpointv3.LocalityLbEndpoints{Locality: le.Locality, Priority: uint32(p)}
			var weight uint32
			for _, i := range byPrio[p] {
				split.LbEndpoints = append(split.LbEndpoints, le.LbEndpoints[i])
				weight += le.LbEndpoints[i].GetLoadBalancingWeight().GetValue()
			}
			split.LoadBalancingWeight = wrapperspb.UInt32(weight)
			out = append(out, split)
		}
	}
	compactPriorities(out)
	cla.Endpoints = out
}

func parseLocalityOrNil(s string) *corev3.Locality {
	if s == "" {
		return nil
	}
	return parseLocality(s)
}

// Envoy's slow start defaults, which istiod writes out for warmup.
const (
	defaultAggression       = 1.0
	defaultMinWeightPercent = 10.0
)

// applyWarmup is istiod's slow start for ROUND_ROBIN and LEAST_REQUEST
// clusters (Istio's default included): warmup, else the deprecated
// warmupDurationSecs, becomes the policy's slow_start_config. Hash
// policies have none, as in Envoy; grpc-go has no slow start.
func (t *translation) applyWarmup(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings) {
	if t.proxy.Generator == GeneratorGRPC {
		return
	}
	var ss *clusterv3.Cluster_SlowStartConfig
	switch w := lb.GetWarmup(); {
	case w != nil:
		aggression, minPercent := defaultAggression, defaultMinWeightPercent
		if a := w.GetAggression(); a != nil {
			aggression = a.GetValue()
		}
		if m := w.GetMinimumPercent(); m != nil {
			minPercent = m.GetValue()
		}
		ss = &clusterv3.Cluster_SlowStartConfig{
			SlowStartWindow:  w.GetDuration(),
			Aggression:       &corev3.RuntimeDouble{DefaultValue: aggression, RuntimeKey: "("},
			MinWeightPercent: &typev3.Percent{Value: minPercent},
		}
	case lb.GetWarmupDurationSecs() != nil:
		ss = &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: lb.GetWarmupDurationSecs()}
	default:
		return
	}
	switch c.LbPolicy {
	case clusterv3.Cluster_ROUND_ROBIN:
		c.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{SlowStartConfig: ss}}
	case clusterv3.Cluster_LEAST_REQUEST:
		c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{SlowStartConfig: ss}}
	}
}

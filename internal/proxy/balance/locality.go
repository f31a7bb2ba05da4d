package balance

import (
	"math/bits"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Locality-weighted balancing (the cluster's
// common_lb_config.locality_weighted_lb_config, which istiod sets for
// localityLbSetting distribute and failover) is Envoy's two-step pick: a
// locality by its weight, scaled by its availability (min(1, 1.4 *
// healthy/all) of its endpoints), then a host of that locality by the
// cluster's policy. The two steps matter for least-request: comparing two
// candidates from different localities by their active requests would
// move traffic from the busier locality to the idler one, and a
// distribute of 80/20 would drift towards 50/50 under load. The hash
// policies keep the folded weights (flattenTier), as Envoy's ring hash and
// Maglev fold locality weights into host weights too.

// addTier adds a priority level's healthy (or degraded) hosts as a level
// taking load percent of traffic, with what the cluster's locality
// weighting and slow start need.
func (s *snapshot) addTier(b *Balancer, hosts []*Host, eps []weightedEndpoint, degraded bool, load uint32, rr *counter) {
	weights := flattenTier(eps, degraded)
	for i, h := range hosts {
		h.weight.Store(weights[i])
	}
	if load == 0 || len(hosts) == 0 {
		return
	}
	l := b.build(hosts, weights, rr)
	if b.localityWeighted && b.policy != xdsresource.LBRingHash && b.policy != xdsresource.LBMaglev {
		b.splitLocalities(&l, eps, degraded)
	}
	if l.locs == nil {
		b.attachSlowStart(&l)
	}
	s.levels = append(s.levels, l)
	s.load = append(s.load, load)
}

// splitLocalities gives l one sub-level per locality, each balanced over
// its hosts by endpoint weight, and the table that picks a locality by
// weight times availability. A level of one locality, or whose localities
// all have no weight, stays as it is.
func (b *Balancer) splitLocalities(l *level, eps []weightedEndpoint, degraded bool) {
	var order []*xdsresource.LocalityEndpoints
	members := map[*xdsresource.LocalityEndpoints][]int{}
	for i, e := range eps {
		if _, ok := members[e.loc]; !ok {
			order = append(order, e.loc)
		}
		members[e.loc] = append(members[e.loc], i)
	}
	if len(order) < 2 {
		return
	}
	locWeights := make([]uint32, len(order))
	any := false
	for i, loc := range order {
		up := 0
		for _, ep := range loc.Endpoints {
			if (!degraded && ep.Healthy) || (degraded && ep.Degraded && !ep.Healthy) {
				up++
			}
		}
		// Weight × availability, in 1/1000ths of a weight unit so that
		// small weights keep their ratio.
		avail := min(1000, 1400*up/max(len(loc.Endpoints), 1))
		locWeights[i] = uint32(min(uint64(loc.Weight)*uint64(avail), 1<<32-1))
		if locWeights[i] > 0 {
			any = true
		}
	}
	if !any {
		return
	}
	l.locs = make([]level, len(order))
	for i, loc := range order {
		idx := members[loc]
		hosts := make([]*Host, len(idx))
		w := make([]uint32, len(idx))
		for j, k := range idx {
			hosts[j] = l.hosts[k]
			w[j] = max(eps[k].ep.Weight, 1)
		}
		rr := new(counter)
		rr.n.Store(b.rand.Uint64())
		l.locs[i] = b.build(hosts, w, rr)
		b.attachSlowStart(&l.locs[i])
	}
	l.locCut, l.locAlias = buildAlias(locWeights)
}

// locality returns the sub-level a request goes to, or l itself when it
// is not split by locality.
func (l *level) locality(r uint64) *level {
	if l.locs == nil {
		return l
	}
	i, coin := bits.Mul64(r, uint64(len(l.locs)))
	if coin >= l.locCut[i] {
		i = uint64(l.locAlias[i])
	}
	return &l.locs[i]
}

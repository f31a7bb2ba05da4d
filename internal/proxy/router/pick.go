package router

import "github.com/trellismesh/trellis/internal/proxy/xdsresource"

// PickCluster chooses one of a route's weighted clusters as Envoy does:
// rnd modulo the sum of the weights, walked through the cumulative
// weights. The caller supplies rnd so it owns the RNG (a per-worker
// generator, no lock) and tests are deterministic. The sum is recomputed
// rather than taken from TotalWeight, as Envoy does since total_weight was
// deprecated, so an inconsistent TotalWeight cannot skew the split. It
// returns nil when the action has no cluster or every weight is 0.
func PickCluster(a *xdsresource.RouteAction, rnd uint64) *xdsresource.WeightedCluster {
	cs := a.Clusters
	if len(cs) == 1 {
		return &cs[0]
	}
	var total uint64
	for i := range cs {
		total += uint64(cs[i].Weight)
	}
	if total == 0 {
		return nil
	}
	v := rnd % total
	for i := range cs {
		w := uint64(cs[i].Weight)
		if v < w {
			return &cs[i]
		}
		v -= w
	}
	return nil // unreachable: v < total
}

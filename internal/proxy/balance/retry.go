package balance

// Retries that leave priorities out: Envoy's previous_priorities retry
// priority (Istio's retryRemoteLocalities), by which a retry goes to a
// priority level (with locality failover, a locality) that the request
// has not tried yet.

// priorityHosts are one priority level's healthy hosts.
type priorityHosts struct {
	priority uint32
	hosts    []*Host
}

// addPriority records the healthy hosts of a priority level, whatever its
// share of traffic: a retry that leaves the busier levels out may need a
// level that normally gets none.
func (s *snapshot) addPriority(priority uint32, hosts []*Host) {
	var healthy []*Host
	for _, h := range hosts {
		if h.Healthy() {
			healthy = append(healthy, h)
		}
	}
	if len(healthy) > 0 {
		s.prios = append(s.prios, priorityHosts{priority, healthy})
	}
}

// Priority is the host's priority level in its cluster.
func (h *Host) Priority() uint32 { return h.priority.Load() }

// PriorityBit is the bit of priority p in a set of tried priorities.
func PriorityBit(p uint32) uint64 { return 1 << min(p, 63) }

// PickAvoiding is Pick for a retry that prefers priority levels not in
// tried (a set of PriorityBit): the traffic of the tried levels goes to
// the others, the lowest untried level with a healthy host taking it, as
// Envoy's previous_priorities recomputes the priority load with the tried
// levels' health set to zero. Within that level the host is drawn by
// weight, whatever the cluster's policy. When every level with a healthy
// host was tried, it is Pick.
func (b *Balancer) PickAvoiding(hash uint64, hasHash bool, tried uint64) *Host {
	if tried != 0 {
		s := b.snap.Load()
		for i := range s.prios {
			p := &s.prios[i]
			if tried&PriorityBit(p.priority) != 0 {
				continue
			}
			var total uint64
			for _, h := range p.hosts {
				total += uint64(h.Weight())
			}
			r := bounded(b.rand.Uint64(), total)
			for _, h := range p.hosts {
				w := uint64(h.Weight())
				if r < w && !h.removed.Load() {
					return h
				}
				r -= min(r, w)
			}
			break
		}
	}
	return b.Pick(hash, hasHash)
}

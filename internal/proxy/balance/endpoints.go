package balance

import (
	"math"
	"slices"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

type weightedEndpoint struct {
	ep  *xdsresource.Endpoint
	loc *xdsresource.LocalityEndpoints
}

// groupPriorities returns cla's endpoints grouped by priority, lowest
// (most preferred) first, each group in the assignment's order, healthy
// or not.
func groupPriorities(cla *xdsresource.ClusterLoadAssignment) [][]weightedEndpoint {
	if cla == nil {
		return nil
	}
	var prios []uint32
	for i := range cla.Localities {
		if p := cla.Localities[i].Priority; len(cla.Localities[i].Endpoints) > 0 && !slices.Contains(prios, p) {
			prios = append(prios, p)
		}
	}
	slices.Sort(prios)
	groups := make([][]weightedEndpoint, len(prios))
	for i := range cla.Localities {
		l := &cla.Localities[i]
		if len(l.Endpoints) == 0 {
			continue
		}
		g, _ := slices.BinarySearch(prios, l.Priority)
		for j := range l.Endpoints {
			groups[g] = append(groups[g], weightedEndpoint{ep: &l.Endpoints[j], loc: l})
		}
	}
	return groups
}

// overprovisioning is Envoy's default overprovisioning factor, in percent:
// a priority level or locality with at least 1/1.4 of its endpoints
// healthy counts as fully available.
const overprovisioning = 140

// DefaultPanicThreshold is Envoy's default healthy_panic_threshold, in
// percent.
const DefaultPanicThreshold = 50

// priorityLoad is tierLoad without degraded hosts: each level's share of
// traffic, all of it to healthy hosts (or all hosts in panic).
func priorityLoad(healthy, total []int, threshold float64) (load []uint32, panic []bool) {
	load, _, panic = tierLoad(healthy, make([]int, len(total)), total, threshold)
	return load, panic
}

// tierLoad is Envoy's split of traffic between priority levels and, within
// each, between its healthy and its degraded hosts
// (LoadBalancerBase::recalculatePerPriorityState and
// recalculatePerPriorityPanic), in whole percent.
//
// Level i's health is min(100, 140*healthy/total) and its degraded
// availability min(100, 140*degraded/total), in integer percent. Their
// sum over all levels, capped at 100, is the normalised availability.
// Traffic goes first to the levels' healthy hosts in priority order, each
// level taking up to its health scaled by 100/availability; what is left
// goes to the levels' degraded hosts the same way, so degraded hosts act
// as a tier below every level's healthy ones; rounding leaves go to the
// first level with healthy hosts, else the first with degraded ones.
// Degraded hosts thus take traffic only once the healthy ones are not
// enough (fewer than 1/1.4 of all hosts across the levels).
//
// While the availability is below 100, a level whose healthy plus
// degraded share is below threshold percent is in panic: it balances
// over all of its hosts, whatever their health, with both of its shares.
// When every level is in panic, load goes by host count instead (as
// healthy load). A threshold of 0 disables panic; with no healthy or
// degraded host anywhere the load is then all zero (no host).
func tierLoad(healthy, degraded, total []int, threshold float64) (load, degLoad []uint32, panic []bool) {
	n := len(total)
	load, degLoad, panic = make([]uint32, n), make([]uint32, n), make([]bool, n)
	health, deg := make([]uint32, n), make([]uint32, n)
	var sum uint32
	for i := range n {
		if total[i] > 0 {
			health[i] = min(100, uint32(overprovisioning*healthy[i]/total[i]))
			deg[i] = min(100, uint32(overprovisioning*degraded[i]/total[i]))
		}
		sum += health[i] + deg[i]
	}
	norm := min(100, sum)
	allPanic := n > 0
	for i := range n {
		panic[i] = norm < 100 && threshold > 0 &&
			(total[i] == 0 || 100*float64(healthy[i]+degraded[i])/float64(total[i]) < threshold)
		allPanic = allPanic && panic[i]
	}
	if allPanic {
		hosts := 0
		for _, t := range total {
			hosts += t
		}
		if hosts == 0 {
			return load, degLoad, panic
		}
		rest, first := uint32(100), -1
		for i, t := range total {
			if first < 0 && t > 0 {
				first = i
			}
			load[i] = uint32(100 * t / hosts)
			rest -= load[i]
		}
		load[first] += rest
		return load, degLoad, panic
	}
	if norm == 0 {
		return load, degLoad, panic
	}
	firstHealthy, rest := distribute(load, health, 100, norm)
	firstDegraded, rest := distribute(degLoad, deg, rest, norm)
	if rest > 0 {
		if firstHealthy >= 0 {
			load[firstHealthy] += rest
		} else {
			degLoad[firstDegraded] += rest
		}
	}
	return load, degLoad, panic
}

// distribute is Envoy's distributeLoad: it gives each level up to its
// availability*100/norm of total, in order, and returns the first level
// with any availability (-1 if none) and what is left of total.
func distribute(load, avail []uint32, total, norm uint32) (first int, rest uint32) {
	first = -1
	for i := range avail {
		if first < 0 && avail[i] > 0 {
			first = i
		}
		load[i] = min(total, avail[i]*100/norm)
		total -= load[i]
	}
	return first, total
}

// flattenTier folds locality weights into host weights: a host's share of the
// cluster becomes its locality's share times its share of that locality,
// which is the long-run result of Envoy's locality-weighted pick (choose a
// locality by weight, then a host in it) without a second pick per
// request. As in Envoy, a locality's weight is scaled by its availability,
// min(1, 1.4 * healthy/all endpoints), so a half-failed locality does not
// pour its whole share onto its few healthy hosts.
//
// Locality weights count only when every locality in play has one: Envoy
// ignores them unless locality-weighted balancing is enabled, and a zero
// there means the locality is not configured for it. Trellis's translator
// sets each locality's weight to the sum of its endpoints' weights, so
// with every endpoint healthy this is the identity.
//
// eps are a level's healthy hosts or, when degraded, its degraded hosts,
// whose localities' availability then counts degraded endpoints (Envoy
// keeps a second locality schedule for them).
func flattenTier(eps []weightedEndpoint, degraded bool) []uint32 {
	w := make([]uint32, len(eps))
	useLoc := true
	sums := map[*xdsresource.LocalityEndpoints]uint64{}
	for i, e := range eps {
		w[i] = max(e.ep.Weight, 1)
		sums[e.loc] += uint64(w[i])
		if e.loc.Weight == 0 {
			useLoc = false
		}
	}
	if !useLoc || len(sums) < 2 {
		return w
	}
	locShare := map[*xdsresource.LocalityEndpoints]float64{}
	identity := true
	for l, s := range sums {
		healthy := 0
		for _, ep := range l.Endpoints {
			if (!degraded && ep.Healthy) || (degraded && ep.Degraded) {
				healthy++
			}
		}
		avail := min(1, 1.4*float64(healthy)/float64(len(l.Endpoints)))
		locShare[l] = float64(l.Weight) * avail
		if uint64(l.Weight) != s || avail < 1 {
			identity = false
		}
	}
	if identity {
		return w
	}
	// Scale so the heaviest host gets 1<<16: enough precision for shares
	// while keeping round-robin schedules and ring sizes bounded.
	share := make([]float64, len(eps))
	var top float64
	for i, e := range eps {
		share[i] = locShare[e.loc] * float64(w[i]) / float64(sums[e.loc])
		top = max(top, share[i])
	}
	for i := range w {
		w[i] = uint32(max(1, math.Round(share[i]/top*(1<<16))))
	}
	return w
}

func nextPrime(n uint64) uint64 {
	if n < 2 {
		return 2
	}
	for ; ; n++ {
		if isPrime(n) {
			return n
		}
	}
}

func isPrime(n uint64) bool {
	if n < 4 {
		return n >= 2
	}
	if n%2 == 0 {
		return false
	}
	for d := uint64(3); d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func float64bits(f float64) uint64     { return math.Float64bits(f) }
func float64frombits(b uint64) float64 { return math.Float64frombits(b) }

package balance

import (
	"math"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

type weightedEndpoint struct {
	ep  *xdsresource.Endpoint
	loc *xdsresource.LocalityEndpoints
}

// selectEndpoints returns the healthy endpoints of the lowest priority
// that has any, with their effective weights.
func selectEndpoints(cla *xdsresource.ClusterLoadAssignment) ([]weightedEndpoint, []uint32) {
	if cla == nil {
		return nil, nil
	}
	best := uint32(math.MaxUint32)
	found := false
	for i := range cla.Localities {
		l := &cla.Localities[i]
		for j := range l.Endpoints {
			if l.Endpoints[j].Healthy && (!found || l.Priority < best) {
				best, found = l.Priority, true
				break
			}
		}
	}
	if !found {
		return nil, nil
	}
	var eps []weightedEndpoint
	for i := range cla.Localities {
		l := &cla.Localities[i]
		if l.Priority != best {
			continue
		}
		for j := range l.Endpoints {
			if l.Endpoints[j].Healthy {
				eps = append(eps, weightedEndpoint{ep: &l.Endpoints[j], loc: l})
			}
		}
	}
	return eps, flatten(eps)
}

// flatten folds locality weights into host weights: a host's share of the
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
func flatten(eps []weightedEndpoint) []uint32 {
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
			if ep.Healthy {
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

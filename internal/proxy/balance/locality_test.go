package balance

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// twoZones is a priority-0 assignment: zone a with weight wa over na
// hosts 10.0.0.x (the first upA healthy), zone b with weight wb over nb
// hosts 10.1.0.x.
func twoZones(wa, na, upA, wb, nb uint32) *xdsresource.ClusterLoadAssignment {
	zone := func(name string, octet int, w, n, up uint32) xdsresource.LocalityEndpoints {
		l := xdsresource.LocalityEndpoints{Region: "r1", Zone: name, Weight: w}
		for i := range n {
			l.Endpoints = append(l.Endpoints, xdsresource.Endpoint{
				Address: "10." + string(rune('0'+octet)) + ".0." + string(rune('1'+i)), Port: 80, Weight: 1, Healthy: i < up})
		}
		return l
	}
	return &xdsresource.ClusterLoadAssignment{ClusterName: "c", Localities: []xdsresource.LocalityEndpoints{
		zone("a", 0, wa, na, upA), zone("b", 1, wb, nb, nb),
	}}
}

// zoneShare picks n times and returns zone a's share in percent. With
// inFlight > 0 every pick stays active until inFlight later picks have
// been made, so least-request sees hosts with requests in flight (a busy
// host looks worse), as under load.
func zoneShare(b *Balancer, n, inFlight int) float64 {
	var window []*Host
	a := 0
	for range n {
		h := b.Pick(0, false)
		if h.Zone == "a" {
			a++
		}
		if inFlight > 0 {
			h.Start()
			window = append(window, h)
			if len(window) > inFlight {
				window[0].Done(0)
				window = window[1:]
			}
		}
	}
	return 100 * float64(a) / float64(n)
}

// Envoy's locality-weighted balancing: a locality by weight (scaled by
// the share of its endpoints that are healthy, times 1.4, at most 1),
// then a host in it. Zone a has 80 and three hosts, zone b 20 and one.
func TestLocalityWeightedPicks(t *testing.T) {
	for _, policy := range []xdsresource.LBPolicy{xdsresource.LBRoundRobin, xdsresource.LBRandom, xdsresource.LBLeastRequest} {
		b := New(&xdsresource.Cluster{LBPolicy: policy, LocalityWeighted: true}, WithRand(rand.New(rand.NewPCG(1, 2))))
		b.Update(twoZones(80, 3, 3, 20, 1))
		if got := zoneShare(b, 100000, 0); math.Abs(got-80) > 1 {
			t.Errorf("%v: zone a got %.1f%%, want 80 ± 1", policy, got)
		}
		// Under load, least request compares hosts of one zone only, so
		// the zones keep their weights; comparing across zones would push
		// zone b's one host towards a quarter of the traffic.
		if got := zoneShare(b, 100000, 40); math.Abs(got-80) > 1 {
			t.Errorf("%v with requests in flight: zone a got %.1f%%, want 80 ± 1", policy, got)
		}
		// One of zone a's three hosts unhealthy: availability
		// min(1, 1.4*2/3) = 0.933, so 80*0.933 : 20, a gets 78.9%.
		b.Update(twoZones(80, 3, 2, 20, 1))
		if got := zoneShare(b, 100000, 0); math.Abs(got-78.9) > 1 {
			t.Errorf("%v, a host of zone a down: zone a got %.1f%%, want 78.9 ± 1", policy, got)
		}
	}
}

// Without locality_weighted_lb_config the two-step pick is off: least
// request under load balances by active requests across all hosts, as
// before (the weights of a translator that sets locality weights to the
// sum of their endpoints' change nothing when all are healthy).
func TestLocalityWeightsNeedTheConfig(t *testing.T) {
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBLeastRequest}, WithRand(rand.New(rand.NewPCG(3, 4))))
	b.Update(twoZones(3, 3, 3, 1, 1))
	if got := zoneShare(b, 50000, 0); math.Abs(got-75) > 1.5 {
		t.Errorf("zone a got %.1f%%, want 75 ± 1.5 (by host count)", got)
	}
	if b.snap.Load().levels[0].locs != nil {
		t.Error("level split by locality without the cluster asking")
	}
}

// Hash policies keep folded weights, as Envoy's ring hash and Maglev do.
func TestLocalityWeightedHashPolicyFolds(t *testing.T) {
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBMaglev, LocalityWeighted: true})
	b.Update(twoZones(80, 3, 3, 20, 1))
	a := 0
	const n = 20000
	for i := range n {
		if b.Pick(uint64(i)*0x9e3779b97f4a7c15, true).Zone == "a" {
			a++
		}
	}
	if got := 100 * float64(a) / n; math.Abs(got-80) > 2 {
		t.Errorf("zone a got %.1f%% of keys, want 80 ± 2", got)
	}
}

func TestLocalityWeightedPickAllocs(t *testing.T) {
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBLeastRequest, LocalityWeighted: true})
	b.Update(twoZones(80, 3, 3, 20, 1))
	if n := testing.AllocsPerRun(1000, func() { b.Pick(0, false) }); n != 0 {
		t.Errorf("Pick allocates %.1f times", n)
	}
}

package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// fakeClock is a settable monotonic clock.
type fakeClock struct{ now time.Duration }

func (c *fakeClock) read() time.Duration { return c.now }

func hostsCLA(n int) *xdsresource.ClusterLoadAssignment {
	var eps []xdsresource.Endpoint
	for i := range n {
		eps = append(eps, xdsresource.Endpoint{Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 80, Weight: 1, Healthy: true})
	}
	return &xdsresource.ClusterLoadAssignment{ClusterName: "c", Localities: []xdsresource.LocalityEndpoints{{Weight: uint32(n), Endpoints: eps}}}
}

// share is the percentage of n picks that went to addr.
func share(b *Balancer, addr string, n int) float64 {
	k := 0
	for range n {
		if b.Pick(0, false).Addr() == addr {
			k++
		}
	}
	return 100 * float64(k) / float64(n)
}

// A host that joins a cluster with slow start gets its weight times
// max(min_weight_percent, (age/window)^(1/aggression)) until the window
// ends: with two old hosts of weight 1, the new one's share is f/(2+f).
func TestSlowStartWeights(t *testing.T) {
	type at struct {
		age  time.Duration
		want float64 // percent
	}
	cases := []struct {
		name   string
		policy xdsresource.LBPolicy
		ss     xdsresource.SlowStart
		points []at
	}{
		{"round robin, linear", xdsresource.LBRoundRobin, xdsresource.SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10},
			[]at{{0, 100 * 0.1 / 2.1}, {5 * time.Second, 100 * 0.5 / 2.5}, {9 * time.Second, 100 * 0.9 / 2.9}, {10 * time.Second, 100.0 / 3}}},
		{"least request, linear", xdsresource.LBLeastRequest, xdsresource.SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10},
			[]at{{0, 100 * 0.1 / 2.1}, {5 * time.Second, 100 * 0.5 / 2.5}, {11 * time.Second, 100.0 / 3}}},
		// Aggression 2: the square root of the time factor.
		{"aggression 2", xdsresource.LBRoundRobin, xdsresource.SlowStart{Window: 10 * time.Second, Aggression: 2, MinWeightPercent: 10},
			[]at{{2500 * time.Millisecond, 100 * 0.5 / 2.5}}},
		// A higher floor holds until the ramp passes it.
		{"min 40%", xdsresource.LBRoundRobin, xdsresource.SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 40},
			[]at{{time.Second, 100 * 0.4 / 2.4}, {8 * time.Second, 100 * 0.8 / 2.8}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Hour}
			ss := tc.ss
			b := New(&xdsresource.Cluster{LBPolicy: tc.policy, SlowStart: &ss}, WithClock(clock.read), WithRand(rand.New(rand.NewPCG(5, 6))))
			b.Update(hostsCLA(2))
			// The first hosts are not warmed: they would all ramp alike.
			if got := share(b, "10.0.0.1:80", 20000); math.Abs(got-50) > 1.5 {
				t.Fatalf("first hosts: 10.0.0.1 got %.1f%%, want 50", got)
			}
			b.Update(hostsCLA(3))
			start := clock.now
			for _, p := range tc.points {
				clock.now = start + p.age
				if got := share(b, "10.0.0.3:80", 40000); math.Abs(got-p.want) > 1.5 {
					t.Errorf("at %v: the new host got %.1f%%, want %.1f ± 1.5", p.age, got, p.want)
				}
			}
		})
	}
}

// A new host that is unhealthy at first starts its window when it turns
// healthy; the slow path never allocates; random and hash policies have
// no slow start (Envoy's is for round robin and least request only).
func TestSlowStartDetails(t *testing.T) {
	clock := &fakeClock{now: time.Hour}
	ss := xdsresource.SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10}
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin, SlowStart: &ss}, WithClock(clock.read))
	b.Update(hostsCLA(2))
	late := hostsCLA(3)
	late.Localities[0].Endpoints[2].Healthy = false
	b.Update(late)
	clock.now += 30 * time.Second
	b.Update(hostsCLA(3)) // healthy now: its window starts here
	if got := share(b, "10.0.0.3:80", 40000); math.Abs(got-100*0.1/2.1) > 1.5 {
		t.Errorf("just healthy: the new host got %.1f%%, want 4.8 ± 1.5", got)
	}
	if n := testing.AllocsPerRun(1000, func() { b.Pick(0, false) }); n != 0 {
		t.Errorf("Pick in slow start allocates %.1f times", n)
	}
	clock.now += 10 * time.Second
	if got := share(b, "10.0.0.3:80", 30000); math.Abs(got-100.0/3) > 1.5 {
		t.Errorf("after the window: the new host got %.1f%%, want 33.3 ± 1.5", got)
	}
	if !b.snap.Load().levels[0].slow.over.Load() {
		t.Error("the level is still on the slow path after its last window")
	}

	for _, p := range []xdsresource.LBPolicy{xdsresource.LBRandom, xdsresource.LBRingHash} {
		r := New(&xdsresource.Cluster{LBPolicy: p, SlowStart: &ss}, WithClock(clock.read))
		r.Update(hostsCLA(2))
		r.Update(hostsCLA(3))
		if r.snap.Load().levels[0].slow != nil {
			t.Errorf("%v: slow start applied", p)
		}
	}
}

// Slow start composes with locality-weighted picks: a new host warms
// within its locality, whose share stays its weight.
func TestSlowStartWithinLocality(t *testing.T) {
	clock := &fakeClock{now: time.Hour}
	ss := xdsresource.SlowStart{Window: 10 * time.Second, Aggression: 1, MinWeightPercent: 10}
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBLeastRequest, LocalityWeighted: true, SlowStart: &ss}, WithClock(clock.read), WithRand(rand.New(rand.NewPCG(7, 8))))
	b.Update(twoZones(80, 1, 1, 20, 1))
	b.Update(twoZones(80, 2, 2, 20, 1))
	clock.now += 5 * time.Second
	a1, a2, n := 0, 0, 60000
	for range n {
		switch b.Pick(0, false).Addr() {
		case "10.0.0.1:80":
			a1++
		case "10.0.0.2:80":
			a2++
		}
	}
	if got := 100 * float64(a1+a2) / float64(n); math.Abs(got-80) > 1.5 {
		t.Errorf("zone a got %.1f%%, want 80", got)
	}
	// Within zone a the new host has half its weight: 1/3 of a's share.
	if got := 100 * float64(a2) / float64(a1+a2); math.Abs(got-100.0/3) > 2 {
		t.Errorf("the new host got %.1f%% of zone a, want 33.3", got)
	}
}

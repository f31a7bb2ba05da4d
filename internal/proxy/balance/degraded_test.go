package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

func TestTierLoad(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		healthy, degraded, total []int
		threshold                float64
		load, degLoad            []uint32
		panic                    []bool
	}{
		// Envoy's "Degraded endpoints" table, one priority level of 100
		// hosts: healthy/degraded/unhealthy percent.
		{"100/0/0", []int{100}, []int{0}, []int{100}, 50, []uint32{100}, []uint32{0}, []bool{false}},
		{"71/0/29", []int{71}, []int{0}, []int{100}, 50, []uint32{100}, []uint32{0}, []bool{false}},
		{"71/29/0", []int{71}, []int{29}, []int{100}, 50, []uint32{99}, []uint32{1}, []bool{false}},
		{"25/65/10", []int{25}, []int{65}, []int{100}, 50, []uint32{35}, []uint32{65}, []bool{false}},
		{"5/0/95", []int{5}, []int{0}, []int{100}, 50, []uint32{100}, []uint32{0}, []bool{true}}, // total panic
		// The example of Envoy's recalculatePerPriorityState: healths
		// 10/20/10 and degraded availabilities 20/10/0 (1 of 14 hosts is
		// 10%) give 16/28/14 to healthy hosts and 28/14/0 to degraded
		// ones, P0 taking the 2 points lost to rounding. Panic is off, as
		// it is not part of that example.
		{"three levels", []int{1, 2, 1}, []int{2, 1, 0}, []int{14, 14, 14}, 0,
			[]uint32{16, 28, 14}, []uint32{28, 14, 0}, []bool{false, false, false}},
		// Degraded hosts rank below every level's healthy hosts.
		{"healthy P1 before degraded P0", []int{0, 2}, []int{2, 0}, []int{2, 2}, 50,
			[]uint32{0, 100}, []uint32{0, 0}, []bool{false, false}},
		{"all degraded", []int{0}, []int{3}, []int{3}, 50, []uint32{0}, []uint32{100}, []bool{false}},
		// Degraded hosts count towards availability: 35 + 70 is enough,
		// so no level panics, though P1 has no host to take traffic.
		{"degraded avert panic", []int{1, 0}, []int{2, 0}, []int{4, 4}, 50,
			[]uint32{35, 0}, []uint32{65, 0}, []bool{false, false}},
		// Healthy plus degraded below the threshold: panic.
		{"panic counts degraded", []int{0}, []int{1}, []int{4}, 50,
			[]uint32{100}, []uint32{0}, []bool{true}},
		{"panic disabled, only degraded P1", []int{0, 0}, []int{0, 1}, []int{2, 4}, 0,
			[]uint32{0, 0}, []uint32{0, 100}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load, degLoad, panic := tierLoad(tc.healthy, tc.degraded, tc.total, tc.threshold)
			if diff := cmp.Diff(tc.load, load); diff != "" {
				t.Errorf("healthy load (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.degLoad, degLoad); diff != "" {
				t.Errorf("degraded load (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.panic, panic); diff != "" {
				t.Errorf("panic (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDegradedShares checks where picks land, for every policy, with
// degraded hosts in the assignment.
func TestDegradedShares(t *testing.T) {
	spread := func(prefix string, n int, share float64) map[string]float64 {
		m := map[string]float64{}
		for i := range n {
			m[fmt.Sprintf("%s%d:80", prefix, i+1)] = share / float64(n)
		}
		return m
	}
	merge := func(ms ...map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		cla   *xdsresource.ClusterLoadAssignment
		hosts map[string]float64 // addresses not listed must get nothing
	}{
		{
			// 3 of 4 healthy count as all (overprovisioning): the degraded
			// host idles.
			name: "enough healthy", cla: levels("HHHD"), hosts: spread("10.0.0.", 3, 1),
		},
		{
			// 140*2/4 = 70% to the two healthy hosts, 30% to the degraded.
			name: "spill to degraded", cla: levels("HHDD"),
			hosts: merge(spread("10.0.0.", 2, 0.70), map[string]float64{"10.0.0.3:80": 0.15, "10.0.0.4:80": 0.15}),
		},
		{
			// Degraded hosts are not unhealthy ones: with none healthy the
			// level balances over its degraded hosts, not all of them.
			name: "only degraded", cla: levels("DDDU"), hosts: spread("10.0.0.", 3, 1),
		},
		{
			// P1's healthy hosts come before P0's degraded ones.
			name: "healthy P1 before degraded P0", cla: levels("DD", "HH"), hosts: spread("10.1.0.", 2, 1),
		},
		{
			// P0 health 35 and degraded 35, P1 health 100: healthy hosts
			// take everything (35 to P0's, 65 to P1's) before P0's
			// degraded host gets any.
			name: "two levels", cla: levels("HDUU", "HHHH"),
			hosts: merge(map[string]float64{"10.0.0.1:80": 0.35}, spread("10.1.0.", 4, 0.65)),
		},
		{
			// Healths 35 and 35 leave 30 for degraded hosts: every level's
			// healthy hosts first, then P0's degraded ones.
			name: "healthy of all levels, then degraded", cla: levels("HDDD", "HUUU"),
			hosts: map[string]float64{"10.0.0.1:80": 0.35, "10.1.0.1:80": 0.35,
				"10.0.0.2:80": 0.10, "10.0.0.3:80": 0.10, "10.0.0.4:80": 0.10},
		},
		{
			// Below the panic threshold even counting degraded hosts: all
			// four hosts, unhealthy included.
			name: "panic", cla: levels("DUUU"), hosts: spread("10.0.0.", 4, 1),
		},
	} {
		for _, v := range variants() {
			t.Run(tc.name+"/"+policyName(v.p, v.ewma), func(t *testing.T) {
				opts := append([]Option{WithRand(rand.New(rand.NewPCG(1, 2)))}, v.options()...)
				b := New(&xdsresource.Cluster{LBPolicy: v.p}, opts...)
				b.Update(tc.cla)
				got := shareByAddr(b, 200_000, 9)
				for a, s := range got {
					if _, ok := tc.hosts[a]; !ok {
						t.Errorf("%s got %.4f of picks, want none", a, s)
					}
				}
				if v.ewma {
					return // idle peak-EWMA hosts are not picked evenly
				}
				tol := 0.01
				if v.p == xdsresource.LBRingHash {
					tol = 0.04
				}
				for a, want := range tc.hosts {
					if math.Abs(got[a]-want) > tol {
						t.Errorf("%s share %.4f, want %.4f ± %.2f", a, got[a], want, tol)
					}
				}
			})
		}
	}
}

// TestDegradedHostState checks what Hosts reports and that a host moving
// between healthy and degraded keeps its identity across updates.
func TestDegradedHostState(t *testing.T) {
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin})
	b.Update(levels("HD"))
	hs := b.Hosts()
	type state struct {
		Addr              string
		Healthy, Degraded bool
	}
	var got []state
	for _, h := range hs {
		got = append(got, state{h.Addr(), h.Healthy(), h.Degraded()})
	}
	want := []state{{"10.0.0.1:80", true, false}, {"10.0.0.2:80", false, true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	b.Update(levels("DH"))
	if b.Hosts()[0] != hs[0] || b.Hosts()[1] != hs[1] {
		t.Error("hosts changing health were replaced, want kept")
	}
	if !hs[0].Degraded() || hs[0].Healthy() || hs[1].Degraded() || !hs[1].Healthy() {
		t.Errorf("after the swap: %v degraded=%v, %v degraded=%v", hs[0].Addr(), hs[0].Degraded(), hs[1].Addr(), hs[1].Degraded())
	}
}

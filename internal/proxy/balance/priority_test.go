package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/proxy/xxhash"
)

// levels builds an assignment with one locality per priority: level p's
// i-th endpoint is 10.<p>.0.<i+1>:80, healthy where its letter is H,
// degraded where it is D and unhealthy where it is U.
func levels(health ...string) *xdsresource.ClusterLoadAssignment {
	a := &xdsresource.ClusterLoadAssignment{ClusterName: "c"}
	for p, hs := range health {
		l := xdsresource.LocalityEndpoints{Zone: fmt.Sprint("z", p), Weight: uint32(len(hs)), Priority: uint32(p)}
		for i, c := range hs {
			l.Endpoints = append(l.Endpoints, xdsresource.Endpoint{
				Address: fmt.Sprintf("10.%d.0.%d", p, i+1), Port: 80, Weight: 1, Healthy: c == 'H', Degraded: c == 'D'})
		}
		a.Localities = append(a.Localities, l)
	}
	return a
}

func TestPriorityLoad(t *testing.T) {
	for _, tc := range []struct {
		name           string
		healthy, total []int
		threshold      float64
		load           []uint32
		panic          []bool
	}{
		{"all healthy", []int{4}, []int{4}, 50, []uint32{100}, []bool{false}},
		{"standby level idle", []int{4, 4}, []int{4, 4}, 50, []uint32{100, 0}, []bool{false, false}},
		{"overprovisioned", []int{3, 4}, []int{4, 4}, 50, []uint32{100, 0}, []bool{false, false}}, // 140*3/4 = 105
		{"spillover", []int{2, 4}, []int{4, 4}, 50, []uint32{70, 30}, []bool{false, false}},
		{"P0 dead", []int{0, 2}, []int{3, 2}, 50, []uint32{0, 100}, []bool{false, false}},
		{"three levels", []int{1, 1, 4}, []int{4, 4, 4}, 50, []uint32{35, 35, 30}, []bool{false, false, false}},
		// Healths 14 and 84 add up to 98: scaled to 14 and 85, the point
		// lost to rounding to P0; P0 is below 50% healthy, so in panic.
		{"normalised, P0 panics", []int{1, 6}, []int{10, 10}, 50, []uint32{15, 85}, []bool{true, false}},
		// 70 and 14: P0 at exactly 50% is not in panic.
		{"normalised, P1 panics", []int{2, 1}, []int{4, 10}, 50, []uint32{84, 16}, []bool{false, true}},
		{"one level in panic", []int{1}, []int{4}, 50, []uint32{100}, []bool{true}},
		{"total panic by count", []int{0, 0}, []int{2, 6}, 50, []uint32{25, 75}, []bool{true, true}},
		{"total panic, some healthy", []int{1, 1}, []int{3, 3}, 50, []uint32{50, 50}, []bool{true, true}},
		{"threshold lowered", []int{1}, []int{4}, 20, []uint32{100}, []bool{false}},
		{"panic disabled, none healthy", []int{0}, []int{2}, 0, []uint32{0}, []bool{false}},
		{"no hosts", nil, nil, 50, []uint32{}, []bool{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load, panic := priorityLoad(tc.healthy, tc.total, tc.threshold)
			if diff := cmp.Diff(tc.load, load); diff != "" {
				t.Errorf("load (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.panic, panic); diff != "" {
				t.Errorf("panic (-want +got):\n%s", diff)
			}
		})
	}
}

// shareByAddr picks n times, with a random hash for the hash policies,
// and returns each address's share.
func shareByAddr(b *Balancer, n int, seed uint64) map[string]float64 {
	r := rand.New(rand.NewPCG(seed, seed+1))
	c := map[string]int{}
	for i := range n {
		// Half the picks carry a hash; without one the hash policies
		// pick at random.
		h := b.Pick(r.Uint64(), i%2 == 0)
		if h == nil {
			c["<nil>"]++
			continue
		}
		c[h.Addr()]++
	}
	out := map[string]float64{}
	for a, k := range c {
		out[a] = float64(k) / float64(n)
	}
	return out
}

func TestPriorityShares(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cla    *xdsresource.ClusterLoadAssignment
		opts   []Option
		levels []float64          // each priority's share
		hosts  map[string]float64 // addresses not listed must get nothing
	}{
		{
			name: "spillover 2 of 4", cla: levels("HHUU", "HHHH"), levels: []float64{0.70, 0.30},
			hosts: map[string]float64{"10.0.0.1:80": 0.35, "10.0.0.2:80": 0.35,
				"10.1.0.1:80": 0.075, "10.1.0.2:80": 0.075, "10.1.0.3:80": 0.075, "10.1.0.4:80": 0.075},
		},
		{
			name: "P0 all unhealthy", cla: levels("UUU", "HH"), levels: []float64{0, 1},
			hosts: map[string]float64{"10.1.0.1:80": 0.5, "10.1.0.2:80": 0.5},
		},
		{
			name: "P0 overprovisioned", cla: levels("HHHU", "HH"), levels: []float64{1, 0},
			hosts: map[string]float64{"10.0.0.1:80": 1.0 / 3, "10.0.0.2:80": 1.0 / 3, "10.0.0.3:80": 1.0 / 3},
		},
		{
			name: "panic uses unhealthy hosts", cla: levels("HUUU"), levels: []float64{1},
			hosts: map[string]float64{"10.0.0.1:80": 0.25, "10.0.0.2:80": 0.25, "10.0.0.3:80": 0.25, "10.0.0.4:80": 0.25},
		},
		{
			name: "panic disabled", cla: levels("HUUU"), opts: []Option{WithPanicThreshold(0)}, levels: []float64{1},
			hosts: map[string]float64{"10.0.0.1:80": 1},
		},
		{
			// Healths 14 and 84: 15% to P0 over all ten of its hosts (in
			// panic), 85% to P1's six healthy ones.
			name: "P0 in panic, P1 not", cla: levels("HUUUUUUUUU", "HHHHHHUUUU"), levels: []float64{0.15, 0.85},
			hosts: func() map[string]float64 {
				m := map[string]float64{}
				for i := range 10 {
					m[fmt.Sprintf("10.0.0.%d:80", i+1)] = 0.015
				}
				for i := range 6 {
					m[fmt.Sprintf("10.1.0.%d:80", i+1)] = 0.85 / 6
				}
				return m
			}(),
		},
	} {
		for _, v := range variants() {
			t.Run(tc.name+"/"+policyName(v.p, v.ewma), func(t *testing.T) {
				opts := append([]Option{WithRand(rand.New(rand.NewPCG(1, 2)))}, v.options()...)
				b := New(&xdsresource.Cluster{LBPolicy: v.p}, append(opts, tc.opts...)...)
				b.Update(tc.cla)
				got := shareByAddr(b, 200_000, 9)
				level := make([]float64, len(tc.levels))
				for a, s := range got {
					var p int
					if _, err := fmt.Sscanf(a, "10.%d.", &p); err != nil || p >= len(level) {
						t.Fatalf("picked %q", a)
					}
					level[p] += s
				}
				for p := range level {
					if math.Abs(level[p]-tc.levels[p]) > 0.01 {
						t.Errorf("priority %d share %.4f, want %.4f (shares %v)", p, level[p], tc.levels[p], got)
					}
				}
				// A 1024-point ring places keys coarsely; the level split
				// above is exact whatever the ring.
				tol := 0.01
				if v.p == xdsresource.LBRingHash {
					tol = 0.04
				}
				for a, s := range got {
					if _, ok := tc.hosts[a]; !ok {
						t.Errorf("%s got %.4f of picks, want none", a, s)
					}
				}
				if v.ewma {
					// Idle peak-EWMA hosts differ only by when their
					// estimate was set, so the earlier ones win; the
					// level split and the set picked from still hold.
					return
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

func TestPriorityHostsKeptAcrossUpdates(t *testing.T) {
	b := newBalancer(t, xdsresource.LBLeastRequest, levels("HHH", "HH"))
	byAddr := func() map[string]*Host {
		m := map[string]*Host{}
		for _, h := range b.Hosts() {
			m[h.Addr()] = h
		}
		return m
	}
	before := byAddr()
	before["10.0.0.2:80"].Start()

	// 10.0.0.2 turns unhealthy, 10.0.0.3 leaves, 10.1.0.2 leaves; P1
	// gains 10.1.0.3.
	a := levels("HU", "HUH")
	a.Localities[1].Endpoints[1].Address = "10.9.9.9"
	b.Update(a)
	after := byAddr()
	if diff := cmp.Diff([]string{"10.0.0.1:80", "10.0.0.2:80", "10.1.0.1:80", "10.9.9.9:80", "10.1.0.3:80"},
		slices.Collect(func(yield func(string) bool) {
			for _, h := range b.Hosts() {
				if !yield(h.Addr()) {
					return
				}
			}
		})); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	for _, addr := range []string{"10.0.0.1:80", "10.0.0.2:80", "10.1.0.1:80"} {
		if after[addr] != before[addr] || after[addr].Removed() {
			t.Errorf("%s: not the same live host after the update", addr)
		}
	}
	if h := after["10.0.0.2:80"]; h.Healthy() || h.Active() != 1 {
		t.Errorf("10.0.0.2 healthy=%v active=%d, want unhealthy with its request in flight", h.Healthy(), h.Active())
	}
	for _, addr := range []string{"10.0.0.3:80", "10.1.0.2:80"} {
		if !before[addr].Removed() {
			t.Errorf("%s dropped but not marked removed", addr)
		}
	}

	// A host that moves to another priority keeps its state too.
	h := after["10.0.0.1:80"]
	a = levels("H")
	a.Localities[0].Priority = 3
	b.Update(a)
	if b.Hosts()[0] != h || h.Removed() {
		t.Errorf("host moved to priority 3 lost its identity")
	}
	h.Done(time.Millisecond)
}

// TestPriorityConsistentHash checks that with traffic split between
// levels a key keeps its host, two proxies agree, and a change inside
// one level moves no key whose host is in another.
func TestPriorityConsistentHash(t *testing.T) {
	for _, p := range []xdsresource.LBPolicy{xdsresource.LBRingHash, xdsresource.LBMaglev} {
		t.Run(policyName(p, false), func(t *testing.T) {
			// Five hosts in P1, so that dropping one keeps the ring's
			// points per host (see buildRing).
			b := newBalancer(t, p, levels("HHUU", "HHHHH"))
			b2 := New(&xdsresource.Cluster{LBPolicy: p}, WithRand(rand.New(rand.NewPCG(11, 12))))
			b2.Update(levels("HHUU", "HHHHH"))
			const keys = 10_000
			before := make([]*Host, keys)
			onP0 := 0
			for k := range keys {
				key := xxhash.Sum64(fmt.Sprint("user-", k), 0)
				before[k] = b.Pick(key, true)
				if got := b.Pick(key, true); got != before[k] {
					t.Fatalf("key %d: %s then %s", k, before[k].Addr(), got.Addr())
				}
				if got := b2.Pick(key, true); got.Addr() != before[k].Addr() {
					t.Fatalf("key %d: two balancers disagree, %s and %s", k, before[k].Addr(), got.Addr())
				}
				if strings.HasPrefix(before[k].Addr(), "10.0.") {
					onP0++
				}
			}
			if f := float64(onP0) / keys; math.Abs(f-0.7) > 0.02 {
				t.Errorf("%.3f of keys on priority 0, want 0.70", f)
			}

			// P1 loses a host but stays fully available (4 of 4): the split
			// holds, P0's keys stay, and for ring hash only the lost
			// host's keys move.
			b.Update(levels("HHUU", "HHHH"))
			moved := 0
			for k := range keys {
				key := xxhash.Sum64(fmt.Sprint("user-", k), 0)
				got := b.Pick(key, true)
				if got == before[k] {
					continue
				}
				moved++
				if strings.HasPrefix(before[k].Addr(), "10.0.") {
					t.Fatalf("key %d moved off %s in priority 0", k, before[k].Addr())
				}
				if p == xdsresource.LBRingHash && before[k].Addr() != "10.1.0.5:80" {
					t.Fatalf("key %d moved off %s, which stayed", k, before[k].Addr())
				}
			}
			if f := float64(moved) / keys; f > 0.3/5*1.5 {
				t.Errorf("%.3f of keys moved, want about 0.06", f)
			}
		})
	}
}

// TestPriorityRoundRobin checks that each level keeps its own rotation:
// the picks that land on a level cycle through its hosts in order.
func TestPriorityRoundRobin(t *testing.T) {
	b := newBalancer(t, xdsresource.LBRoundRobin, levels("HHUU", "HHH"))
	var seq [2][]string
	for range 3000 {
		h := b.Pick(0, false)
		p := 0
		if strings.HasPrefix(h.Addr(), "10.1.") {
			p = 1
		}
		seq[p] = append(seq[p], h.Addr())
	}
	for p, s := range seq {
		n := 2 + p
		for i := n; i < len(s); i++ {
			if s[i] != s[i-n] {
				t.Fatalf("priority %d: picks %v do not cycle with period %d", p, s[:min(len(s), 12)], n)
			}
		}
	}
	if f := float64(len(seq[0])) / 3000; math.Abs(f-0.7) > 0.03 {
		t.Errorf("priority 0 share %.3f, want 0.70", f)
	}
}

func TestPriorityPickDoesNotAllocate(t *testing.T) {
	for _, v := range variants() {
		b := New(&xdsresource.Cluster{LBPolicy: v.p}, v.options()...)
		b.Update(levels("HHUU", "HHHH", "HUUUUUUUUU"))
		var k uint64
		allocs := testing.AllocsPerRun(1000, func() {
			k++
			h := b.Pick(k*0x9e3779b97f4a7c15, k%2 == 0)
			h.Start()
			h.Done(time.Millisecond)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per pick", policyName(v.p, v.ewma), allocs)
		}
	}
}

func BenchmarkPickSpillover(b *testing.B) {
	for _, v := range variants() {
		b.Run(policyName(v.p, v.ewma), func(b *testing.B) {
			bal := New(&xdsresource.Cluster{LBPolicy: v.p}, v.options()...)
			bal.Update(levels("HHHHHUUUUU", "HHHHHHHHHH"))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				k := rand.Uint64()
				for pb.Next() {
					k += 0x9e3779b97f4a7c15
					bal.Pick(k, true)
				}
			})
		})
	}
}

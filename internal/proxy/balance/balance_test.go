package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/proxy/xxhash"
)

// cla builds a one-locality assignment of hosts 10.0.0.<i+1>:8080 with
// the given weights.
func cla(weights ...uint32) *xdsresource.ClusterLoadAssignment {
	var eps []xdsresource.Endpoint
	for i, w := range weights {
		eps = append(eps, xdsresource.Endpoint{Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Port: 8080, Weight: w, Healthy: true})
	}
	return &xdsresource.ClusterLoadAssignment{ClusterName: "c", Localities: []xdsresource.LocalityEndpoints{{Weight: 1, Endpoints: eps}}}
}

func equalWeights(n int) []uint32 {
	w := make([]uint32, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

func newBalancer(t testing.TB, p xdsresource.LBPolicy, a *xdsresource.ClusterLoadAssignment, opts ...Option) *Balancer {
	t.Helper()
	opts = append([]Option{WithRand(rand.New(rand.NewPCG(1, 2)))}, opts...)
	b := New(&xdsresource.Cluster{Name: "c", LBPolicy: p}, opts...)
	b.Update(a)
	return b
}

func index(b *Balancer) map[*Host]int {
	m := map[*Host]int{}
	for i, h := range b.Hosts() {
		m[h] = i
	}
	return m
}

// counts picks n times (hash absent) and returns picks per host index.
func counts(b *Balancer, n int) []int {
	idx := index(b)
	c := make([]int, len(idx))
	for range n {
		c[idx[b.Pick(0, false)]]++
	}
	return c
}

func within(t *testing.T, got []int, want []float64, tol float64) {
	t.Helper()
	total := 0
	for _, g := range got {
		total += g
	}
	for i := range got {
		share := float64(got[i]) / float64(total)
		if math.Abs(share-want[i]) > tol {
			t.Errorf("host %d share %.4f, want %.4f ± %.3f (counts %v)", i, share, want[i], tol, got)
		}
	}
}

func shares(weights ...float64) []float64 {
	var s float64
	for _, w := range weights {
		s += w
	}
	out := make([]float64, len(weights))
	for i, w := range weights {
		out[i] = w / s
	}
	return out
}

func TestRoundRobinOrder(t *testing.T) {
	for _, tc := range []struct {
		weights []uint32
		want    string // one period
	}{
		{[]uint32{1, 1, 1}, "abc"},
		{[]uint32{5, 1, 1}, "aaabcaa"},
		{[]uint32{2, 1}, "aba"},
		{[]uint32{30, 10}, "aaba"}, // reduced by the GCD
		{[]uint32{1, 2, 3}, "cbacbc"},
	} {
		b := newBalancer(t, xdsresource.LBRoundRobin, cla(tc.weights...))
		idx := index(b)
		// The starting point is random; align on the first pick of one
		// full period and then require the exact cycle, twice.
		period := len(tc.want)
		var seq []byte
		for range 3 * period {
			seq = append(seq, byte('a'+idx[b.Pick(0, false)]))
		}
		var rot string
		for off := range period {
			r := tc.want[off:] + tc.want[:off]
			if string(seq[:period]) == r {
				rot = r
			}
		}
		want := rot + rot + rot
		if rot == "" || string(seq) != want {
			t.Errorf("weights %v: sequence %s, want a rotation of %s repeated", tc.weights, seq, tc.want)
		}
	}
}

func TestScheduleScaledWhenLarge(t *testing.T) {
	s := buildSchedule([]uint32{1 << 20, 1, 3 << 19}, 1000)
	got := make([]int, 3)
	for _, i := range s {
		got[i]++
	}
	if len(s) > 1003 || got[1] != 1 || math.Abs(float64(got[2])/float64(got[0])-1.5) > 0.01 {
		t.Errorf("len %d, counts %v", len(s), got)
	}
}

func TestRandomDistribution(t *testing.T) {
	b := newBalancer(t, xdsresource.LBRandom, cla(1, 1, 1, 1))
	within(t, counts(b, 100_000), shares(1, 1, 1, 1), 0.01)
	b = newBalancer(t, xdsresource.LBRandom, cla(1, 2, 3, 4))
	within(t, counts(b, 100_000), shares(1, 2, 3, 4), 0.01)
}

func TestLeastRequestIdleDistribution(t *testing.T) {
	b := newBalancer(t, xdsresource.LBLeastRequest, cla(1, 1, 1, 1, 1))
	within(t, counts(b, 100_000), shares(1, 1, 1, 1, 1), 0.01)
	b = newBalancer(t, xdsresource.LBLeastRequest, cla(1, 3))
	within(t, counts(b, 100_000), shares(1, 3), 0.01)
}

func TestSkewedWeights(t *testing.T) {
	for _, p := range allPolicies {
		b := newBalancer(t, p, cla(1000, 1, 1))
		within(t, counts(b, 100_000), shares(1000, 1, 1), 0.002)
	}
}

func TestEmptyPicksNil(t *testing.T) {
	for _, v := range variants() {
		b := New(&xdsresource.Cluster{LBPolicy: v.p}, v.options()...)
		if h := b.Pick(1, true); h != nil {
			t.Errorf("%s: empty balancer picked %s", policyName(v.p, v.ewma), h.Addr())
		}
		b.Update(cla(1, 2))
		b.Update(&xdsresource.ClusterLoadAssignment{})
		if h := b.Pick(1, false); h != nil {
			t.Errorf("%s: emptied balancer picked %s", policyName(v.p, v.ewma), h.Addr())
		}
	}
}

func TestLeastRequestPrefersLessLoaded(t *testing.T) {
	b := newBalancer(t, xdsresource.LBLeastRequest, cla(equalWeights(4)...))
	hosts := b.Hosts()
	// Host 0 is idle; the others carry 1, 5 and 10 requests.
	for i, n := range []int{0, 1, 5, 10} {
		for range n {
			hosts[i].Start()
		}
	}
	got := counts(b, 100_000)
	// Distinct pairs of 4 hosts: the k-th least loaded (k = 1..4) wins
	// when the other candidate ranks below it, 2(4-k)/12; the busiest
	// never.
	within(t, got, []float64{6.0 / 12, 4.0 / 12, 2.0 / 12, 0}, 0.01)

	// Requests in flight survive an update that keeps the host.
	b.Update(cla(equalWeights(5)...))
	if diff := cmp.Diff([]int64{0, 1, 5, 10, 0}, activeCounts(b)); diff != "" {
		t.Errorf("active after update (-want +got):\n%s", diff)
	}
	for i, n := range []int{0, 1, 5, 10} {
		for range n {
			hosts[i].Done(time.Millisecond)
		}
	}
	if diff := cmp.Diff([]int64{0, 0, 0, 0, 0}, activeCounts(b)); diff != "" {
		t.Errorf("active after Done (-want +got):\n%s", diff)
	}
}

func activeCounts(b *Balancer) []int64 {
	var a []int64
	for _, h := range b.Hosts() {
		a = append(a, h.Active())
	}
	return a
}

// TestLeastRequestUnderLoad simulates requests that each stay in flight
// for a fixed number of later picks: load spreads evenly however
// unlucky the sampling.
func TestLeastRequestUnderLoad(t *testing.T) {
	b := newBalancer(t, xdsresource.LBLeastRequest, cla(equalWeights(10)...))
	idx := index(b)
	const inFlight = 50
	var ring [inFlight]*Host
	got := make([]int, 10)
	maxActive := int64(0)
	for i := range 100_000 {
		if h := ring[i%inFlight]; h != nil {
			h.Done(0)
		}
		h := b.Pick(0, false)
		h.Start()
		ring[i%inFlight] = h
		got[idx[h]]++
		for _, h := range b.Hosts() {
			maxActive = max(maxActive, h.Active())
		}
	}
	within(t, got, shares(equalWeights10()...), 0.005)
	if maxActive > 10 { // 5 each when perfectly even
		t.Errorf("max active %d with %d in flight over 10 hosts", maxActive, inFlight)
	}
}

func equalWeights10() []float64 {
	w := make([]float64, 10)
	for i := range w {
		w[i] = 1
	}
	return w
}

func TestPeakEWMAAvoidsSlowHost(t *testing.T) {
	var clock int64
	b := newBalancer(t, xdsresource.LBLeastRequest, cla(1, 1, 1),
		WithPeakEWMA(10*time.Second, 10*time.Millisecond), withClock(func() int64 { return clock }))
	idx := index(b)
	latency := []time.Duration{time.Millisecond, time.Millisecond, 50 * time.Millisecond}
	got := make([]int, 3)
	// 60 simulated seconds: long enough for the slow host's estimate to
	// decay below the fast hosts' (10s * ln 50 ≈ 39s) and be retried once.
	for i := range 60_000 {
		h := b.Pick(0, false)
		h.Start()
		clock += int64(time.Millisecond) // one request a millisecond
		h.Done(latency[idx[h]])
		if i >= 1_000 {
			got[idx[h]]++
		}
	}
	if share := float64(got[2]) / 59_000; share > 0.01 {
		t.Errorf("slow host got %.3f of traffic (counts %v), want < 0.01", share, got)
	}
	if got[2] == 0 {
		t.Errorf("slow host never retried (counts %v): its estimate should decay while idle", got)
	}
	if math.Abs(float64(got[0]-got[1])) > 0.1*float64(got[0]) {
		t.Errorf("fast hosts unbalanced: %v", got)
	}
}

func TestHashSameKeySameHost(t *testing.T) {
	for _, p := range []xdsresource.LBPolicy{xdsresource.LBRingHash, xdsresource.LBMaglev} {
		b := newBalancer(t, p, cla(equalWeights(20)...))
		for k := range 1000 {
			key := xxhash.Sum64(fmt.Sprint("user-", k), 0)
			want := b.Pick(key, true)
			for range 3 {
				if got := b.Pick(key, true); got != want {
					t.Fatalf("policy %v key %d: %s then %s", p, k, want.Addr(), got.Addr())
				}
			}
		}
		// A fresh balancer over the same set agrees: placement depends on
		// addresses only, so every proxy maps a key the same way.
		b2 := newBalancer(t, p, cla(equalWeights(20)...))
		for k := range 1000 {
			key := xxhash.Sum64(fmt.Sprint("user-", k), 0)
			if b.Pick(key, true).Addr() != b2.Pick(key, true).Addr() {
				t.Fatalf("policy %v: two balancers disagree on key %d", p, k)
			}
		}
	}
}

// remapped returns the fraction of keys whose host changes when host
// `drop` is removed.
func remapped(t *testing.T, p xdsresource.LBPolicy, n, drop int) float64 {
	b := newBalancer(t, p, cla(equalWeights(n)...))
	const keys = 100_000
	before := make([]string, keys)
	r := rand.New(rand.NewPCG(3, 4))
	hs := make([]uint64, keys)
	for i := range hs {
		hs[i] = r.Uint64()
		before[i] = b.Pick(hs[i], true).Addr()
	}
	a := cla(equalWeights(n)...)
	eps := a.Localities[0].Endpoints
	dropped := eps[drop].Address + ":8080"
	a.Localities[0].Endpoints = append(eps[:drop:drop], eps[drop+1:]...)
	b.Update(a)
	moved := 0
	for i, h := range hs {
		after := b.Pick(h, true).Addr()
		if after != before[i] {
			moved++
			if p == xdsresource.LBRingHash && before[i] != dropped {
				t.Fatalf("ring hash moved a key off %s, which stayed", before[i])
			}
		}
	}
	return float64(moved) / keys
}

func TestHashMinimalDisruption(t *testing.T) {
	for _, p := range []xdsresource.LBPolicy{xdsresource.LBRingHash, xdsresource.LBMaglev} {
		for _, n := range []int{5, 10, 50} {
			for _, drop := range []int{0, n / 2, n - 1} {
				f := remapped(t, p, n, drop)
				t.Logf("%s hosts=%d drop=%d moved=%.4f (1/n=%.4f)", policyName(p, false), n, drop, f, 1/float64(n))
				if f > 1.5/float64(n) {
					t.Errorf("policy %v, %d hosts, drop %d: %.4f of keys moved, want <= %.4f", p, n, drop, f, 1.5/float64(n))
				}
			}
		}
	}
}

func TestHashWeights(t *testing.T) {
	for _, tc := range []struct {
		p    xdsresource.LBPolicy
		ring uint64
		tol  float64
	}{
		{xdsresource.LBRingHash, 0, 0.03}, // default 1024 points: coarse
		{xdsresource.LBRingHash, 1 << 16, 0.01},
		{xdsresource.LBMaglev, 0, 0.01},
	} {
		b := New(&xdsresource.Cluster{LBPolicy: tc.p, RingMinSize: tc.ring}, WithRand(rand.New(rand.NewPCG(5, 6))))
		b.Update(cla(1, 2, 3, 4))
		idx := index(b)
		r := rand.New(rand.NewPCG(7, 8))
		got := make([]int, 4)
		for range 200_000 {
			got[idx[b.Pick(r.Uint64(), true)]]++
		}
		within(t, got, shares(1, 2, 3, 4), tc.tol)
		// Without a hash the pick is random, still by weight.
		within(t, counts(b, 200_000), shares(1, 2, 3, 4), tc.tol)
	}
}

func TestRingSize(t *testing.T) {
	for _, tc := range []struct {
		weights  []uint32
		min, max uint64
		want     int
	}{
		{equalWeights(10), 1024, DefaultRingMaxSize, 1280},
		{equalWeights(9), 1024, DefaultRingMaxSize, 1152},
		{equalWeights(1000), 1024, DefaultRingMaxSize, 2000},
		{[]uint32{1, 3}, 1024, DefaultRingMaxSize, 1024},
		{[]uint32{2, 3}, 1024, DefaultRingMaxSize, 1280},
		{equalWeights(10), 1 << 20, 1000, 1000},
	} {
		hs, _ := buildRing(hostsFor(len(tc.weights)), tc.weights, tc.min, tc.max)
		if len(hs) != tc.want {
			t.Errorf("weights %v min %d max %d: %d points, want %d", len(tc.weights), tc.min, tc.max, len(hs), tc.want)
		}
	}
}

func hostsFor(n int) []*Host {
	var hs []*Host
	for i := range n {
		hs = append(hs, &Host{addr: fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1)})
	}
	return hs
}

func TestMaglevTableSize(t *testing.T) {
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBMaglev, MaglevTableSize: 1000})
	b.Update(cla(1, 1, 1))
	if got := len(b.snap.Load().levels[0].maglev); got != 1009 {
		t.Errorf("table size %d, want the next prime 1009", got)
	}
}

func TestEndpointSelection(t *testing.T) {
	ep := func(addr string, w uint32, healthy bool) xdsresource.Endpoint {
		return xdsresource.Endpoint{Address: addr, Port: 80, Weight: w, Healthy: healthy}
	}
	a := &xdsresource.ClusterLoadAssignment{Localities: []xdsresource.LocalityEndpoints{
		{Zone: "a", Priority: 1, Weight: 1, Endpoints: []xdsresource.Endpoint{ep("10.1.0.1", 1, true)}},
		{Zone: "b", Priority: 0, Weight: 1, Endpoints: []xdsresource.Endpoint{ep("10.0.0.1", 1, false)}},
		{Zone: "c", Priority: 2, Weight: 1, Endpoints: []xdsresource.Endpoint{ep("10.2.0.1", 1, true)}},
		{Zone: "d", Priority: 1, Weight: 6, Endpoints: []xdsresource.Endpoint{ep("10.1.0.2", 1, true), ep("10.1.0.3", 2, true), ep("10.1.0.4", 5, false)}},
	}}
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRandom})
	b.Update(a)
	type hw struct {
		Addr   string
		Zone   string
		Weight uint32
	}
	var got []hw
	for _, h := range b.Hosts() {
		got = append(got, hw{h.Addr(), h.Zone, h.Weight()})
	}
	// Priority 0 has no healthy host, so priority 1 serves. Locality d
	// has 2 of 3 endpoints healthy (availability min(1, 1.4*2/3) = 0.933),
	// so weights a:d are 1:5.6, d's part split 1:2 between its healthy
	// hosts; scaled so the heaviest is 65536.
	// Every endpoint is kept, lowest priority first, unhealthy ones at
	// their endpoint weight.
	want := []hw{
		{"10.0.0.1:80", "b", 1},
		{"10.1.0.1:80", "a", 17554}, {"10.1.0.2:80", "d", 32768}, {"10.1.0.3:80", "d", 65536}, {"10.1.0.4:80", "d", 5},
		{"10.2.0.1:80", "c", 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	// Priority 1 is fully available (min(100, 140*3/4)), so it takes all
	// the traffic and priority 2 none.
	for range 1000 {
		if h := b.Pick(0, false); h.Addr() == "10.0.0.1:80" || h.Addr() == "10.1.0.4:80" || h.Addr() == "10.2.0.1:80" {
			t.Fatalf("picked %s, outside priority 1's healthy hosts", h.Addr())
		}
	}

	// No healthy host at all: panic, and the unhealthy host serves.
	b.Update(&xdsresource.ClusterLoadAssignment{Localities: []xdsresource.LocalityEndpoints{{Endpoints: []xdsresource.Endpoint{ep("10.0.0.1", 1, false)}}}})
	if h := b.Pick(0, false); h == nil || h.Addr() != "10.0.0.1:80" || h.Healthy() {
		t.Errorf("no healthy host, panic: picked %v", h)
	}
	// Unless panic is disabled.
	b = New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRandom}, WithPanicThreshold(0))
	b.Update(&xdsresource.ClusterLoadAssignment{Localities: []xdsresource.LocalityEndpoints{{Endpoints: []xdsresource.Endpoint{ep("10.0.0.1", 1, false)}}}})
	if h := b.Pick(0, false); h != nil {
		t.Errorf("no healthy host, panic disabled: picked %s", h.Addr())
	}
	b.Update(nil)
	if h := b.Pick(0, false); h != nil {
		t.Errorf("nil assignment: picked %s", h.Addr())
	}
}

func TestStaticAssignmentAndIPv6(t *testing.T) {
	b := New(&xdsresource.Cluster{LBPolicy: xdsresource.LBRoundRobin, LoadAssignment: &xdsresource.ClusterLoadAssignment{
		Localities: []xdsresource.LocalityEndpoints{{Endpoints: []xdsresource.Endpoint{{Address: "::1", Port: 9, Weight: 1, Healthy: true}}}},
	}})
	if h := b.Pick(0, false); h == nil || h.Addr() != "[::1]:9" {
		t.Errorf("picked %v, want [::1]:9", h)
	}
}

func TestIdentityChangeGivesNewHost(t *testing.T) {
	b := newBalancer(t, xdsresource.LBRandom, cla(1))
	old := b.Hosts()[0]
	old.Start()
	a := cla(1)
	a.Localities[0].Endpoints[0].Workload = "other-pod"
	b.Update(a)
	if h := b.Hosts()[0]; h == old || h.Active() != 0 {
		t.Errorf("a different workload on a reused IP must not inherit state")
	}
	if !old.removed.Load() {
		t.Errorf("replaced host not marked removed")
	}
}

var allPolicies = []xdsresource.LBPolicy{
	xdsresource.LBRoundRobin, xdsresource.LBRandom, xdsresource.LBLeastRequest,
	xdsresource.LBRingHash, xdsresource.LBMaglev,
}

func policyName(p xdsresource.LBPolicy, ewma bool) string {
	n := map[xdsresource.LBPolicy]string{
		xdsresource.LBRoundRobin: "RoundRobin", xdsresource.LBRandom: "Random",
		xdsresource.LBLeastRequest: "LeastRequest", xdsresource.LBRingHash: "RingHash",
		xdsresource.LBMaglev: "Maglev",
	}[p]
	if ewma {
		n += "EWMA"
	}
	return n
}

type variant struct {
	p    xdsresource.LBPolicy
	ewma bool
}

func variants() []variant {
	var v []variant
	for _, p := range allPolicies {
		v = append(v, variant{p, false})
	}
	return append(v, variant{xdsresource.LBLeastRequest, true})
}

func (v variant) options() []Option {
	if v.ewma {
		return []Option{WithPeakEWMA(10*time.Second, 10*time.Millisecond)}
	}
	return nil
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, v := range variants() {
		for _, weights := range [][]uint32{equalWeights(10), {1, 2, 3, 4, 5}} {
			b := New(&xdsresource.Cluster{LBPolicy: v.p}, v.options()...)
			b.Update(cla(weights...))
			var k uint64
			allocs := testing.AllocsPerRun(1000, func() {
				k++
				h := b.Pick(k*0x9e3779b97f4a7c15, k%2 == 0)
				h.Start()
				h.Done(time.Millisecond)
			})
			if allocs != 0 {
				t.Errorf("%s weights %v: %v allocations per pick", policyName(v.p, v.ewma), weights, allocs)
			}
		}
	}
}

// TestPickRacingUpdate checks, under -race, that a Pick starting after an
// Update returned never gets a host that update removed. Update k
// installs ports [k, k+4), so such a pick must see a port >= k.
func TestPickRacingUpdate(t *testing.T) {
	set := func(k int) *xdsresource.ClusterLoadAssignment {
		var eps []xdsresource.Endpoint
		for p := k; p < k+4; p++ {
			eps = append(eps, xdsresource.Endpoint{Address: "10.0.0.1", Port: uint32(p), Weight: uint32(p%3 + 1), Healthy: true})
		}
		return &xdsresource.ClusterLoadAssignment{Localities: []xdsresource.LocalityEndpoints{{Endpoints: eps}}}
	}
	for _, v := range variants() {
		t.Run(policyName(v.p, v.ewma), func(t *testing.T) {
			b := New(&xdsresource.Cluster{LBPolicy: v.p, MaglevTableSize: 251}, v.options()...)
			b.Update(set(1))
			var gen atomic.Int64
			gen.Store(1)
			var stop atomic.Bool
			var wg sync.WaitGroup
			var bad atomic.Int64
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := uint64(w); !stop.Load(); i++ {
						g := gen.Load()
						h := b.Pick(i*0x9e3779b97f4a7c15, i%2 == 0)
						if h == nil || int64(h.Port) < g {
							bad.Add(1)
							continue
						}
						h.Start()
						h.Done(time.Microsecond)
					}
				}()
			}
			for k := 2; k < 500; k++ {
				b.Update(set(k))
				gen.Store(int64(k))
			}
			stop.Store(true)
			wg.Wait()
			if n := bad.Load(); n > 0 {
				t.Errorf("%d picks returned a host removed before the pick started", n)
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	for _, v := range variants() {
		for _, n := range []int{10, 1000} {
			for _, weighted := range []bool{false, true} {
				weights := equalWeights(n)
				if weighted {
					for i := range weights {
						weights[i] = uint32(i%7 + 1)
					}
				}
				name := fmt.Sprintf("%s/hosts=%d/weighted=%v", policyName(v.p, v.ewma), n, weighted)
				b.Run(name, func(b *testing.B) {
					bal := New(&xdsresource.Cluster{LBPolicy: v.p}, v.options()...)
					bal.Update(cla(weights...))
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
	}
}

func BenchmarkUpdate(b *testing.B) {
	weights := make([]uint32, 1000)
	for i := range weights {
		weights[i] = uint32(i%7 + 1)
	}
	a := cla(weights...)
	for _, p := range allPolicies {
		b.Run(policyName(p, false)+"/hosts=1000", func(b *testing.B) {
			bal := New(&xdsresource.Cluster{LBPolicy: p})
			b.ReportAllocs()
			for b.Loop() {
				bal.Update(a)
			}
		})
	}
}

// A pod gaining a sidecar changes how it is reached (through its tunnel),
// so the host must be new: pooled connections were dialled the old way.
func TestTLSModeChangeGivesNewHost(t *testing.T) {
	b := newBalancer(t, xdsresource.LBRandom, cla(1))
	old := b.Hosts()[0]
	a := cla(1)
	a.Localities[0].Endpoints[0].TLSMode = "istio"
	b.Update(a)
	h := b.Hosts()[0]
	if h == old || h.TLSMode != "istio" {
		t.Errorf("host after tlsMode change: same=%v TLSMode=%q", h == old, h.TLSMode)
	}
}

package balance

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Host is one upstream endpoint. Its exported fields never change after
// the Host is created, so they may be read without synchronisation; the
// weight can change across updates and is read with Weight.
type Host struct {
	Address string // IP or DNS name
	Port    uint32
	// Locality and workload identity, for verification and telemetry.
	Region, Zone, SubZone               string
	Workload, Namespace, ServiceAccount string
	// Peer is the workload's telemetry metadata (xdsresource.Endpoint's
	// Peer), for the destination_ labels of the requests sent to it.
	Peer string
	// TLSMode is "istio" when the host runs a sidecar that takes mesh
	// traffic on its tunnel port.
	TLSMode string
	// Proxyless is a proxyless gRPC workload: mesh mTLS to it is direct,
	// it has no tunnel port.
	Proxyless bool

	addr     string // Address:Port, as dialled and hashed
	weight   atomic.Uint32
	healthy  atomic.Bool
	degraded atomic.Bool

	active atomic.Int64
	// joined is when the host's slow start began (slowstart.go).
	joined atomic.Int64
	// priority is the host's priority level in its cluster (retry.go).
	priority atomic.Uint32
	// outlier holds its consecutive-error counts (outlier.go).
	outlier hostOutlier
	// removed is set once an Update has dropped the host, so that a Pick
	// racing with that Update can notice and retry on the new set.
	removed atomic.Bool

	// Peak-EWMA state, used only when the balancer has it enabled.
	ewma      *ewmaConfig
	rttNanos  atomic.Uint64 // float64 bits
	rttUpdate atomic.Int64  // ewmaConfig.now() of the last sample
}

// NewHost returns a host outside any balancer's set, for clusters that
// send each request where it was headed (ORIGINAL_DST) rather than
// balancing over endpoints.
func NewHost(address string, port uint32) *Host {
	h := &Host{Address: address, Port: port, addr: string(appendAddr(nil, address, port))}
	h.healthy.Store(true)
	return h
}

// Addr is "address:port" (IPv6 bracketed), ready to dial.
func (h *Host) Addr() string { return h.addr }

// Weight is the host's effective weight within its priority level: the
// endpoint weight with its locality's weight folded in while the level
// balances over its healthy hosts, the endpoint weight alone for a level
// in panic and for an unhealthy host.
func (h *Host) Weight() uint32 { return h.weight.Load() }

// Healthy reports whether the last update had the host healthy (EDS
// HEALTHY or UNKNOWN). An unhealthy host stays in the set and is picked
// only while its priority level is in panic.
func (h *Host) Healthy() bool { return h.healthy.Load() }

// Degraded reports whether the last update had the host degraded (EDS
// DEGRADED): it is picked only with the share of traffic its priority
// level's healthy hosts cannot take (see tierLoad), or in panic.
func (h *Host) Degraded() bool { return h.degraded.Load() }

// Removed reports whether an Update has dropped the host; its pooled
// connections can then be drained.
func (h *Host) Removed() bool { return h.removed.Load() }

// Active is the number of requests in flight to the host.
func (h *Host) Active() int64 { return h.active.Load() }

// Start records a request sent to the host. Every Start must be followed
// by exactly one Done.
func (h *Host) Start() { h.active.Add(1) }

// Done records the end of a request started with Start, and how long it
// took (used only by the peak-EWMA balancer).
func (h *Host) Done(latency time.Duration) {
	h.active.Add(-1)
	if h.ewma != nil {
		h.observe(latency)
	}
}

// Rand is a source of randomness. The balancer calls it concurrently from
// every picking goroutine, so it must be safe for that; the default uses
// the runtime's per-thread generator. Tests inject a seeded one.
type Rand interface{ Uint64() uint64 }

type runtimeRand struct{}

func (runtimeRand) Uint64() uint64 { return rand.Uint64() }

// Option configures a Balancer.
type Option func(*Balancer)

// WithRand replaces the source of randomness (for deterministic tests).
// It also fixes the round-robin starting point, which is otherwise random
// so that many proxies do not start on the same host.
func WithRand(r Rand) Option { return func(b *Balancer) { b.rand = r } }

// WithPanicThreshold sets the healthy share, in percent, below which a
// priority level balances over all its hosts, healthy or not (Envoy's
// common_lb_config.healthy_panic_threshold; DefaultPanicThreshold unless
// given). 0 disables panic mode: with no healthy host anywhere, Pick
// then returns nil.
func WithPanicThreshold(percent float64) Option {
	return func(b *Balancer) { b.panicThreshold = min(max(percent, 0), 100) }
}

// Balancer picks hosts for one cluster. Its methods are safe for
// concurrent use; Pick never blocks.
//
// It is a concrete type rather than an interface per policy: the policy
// is one switch in Pick, which keeps Pick inlinable-cheap and
// allocation-free, and gives callers one thing to hold.
type Balancer struct {
	snap   atomic.Pointer[snapshot]
	policy xdsresource.LBPolicy
	rand   Rand
	ewma   *ewmaConfig

	ringMin, ringMax uint64
	maglevSize       uint64
	panicThreshold   float64
	// Locality-weighted picks and slow start (locality.go,
	// slowstart.go); populated is set once an update brought hosts.
	localityWeighted bool
	slow             *slowStart
	clock            func() int64
	populated        bool
	od               *detector // outlier detection, nil without it (outlier.go)

	mu    sync.Mutex       // serialises Update
	hosts map[string]*Host // current hosts by addr, owned by Update
	// Round-robin counters by tier (see tierKey), owned by Update; they
	// outlive snapshots so that an update does not restart the rotation.
	rr map[uint64]*counter
}

// tierKey names a priority level's healthy or degraded hosts.
func tierKey(priority uint32, degraded bool) uint64 {
	k := uint64(priority) << 1
	if degraded {
		k |= 1
	}
	return k
}

// counter is a round-robin position on a cache line of its own.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

// Defaults and limits, as Envoy's.
const (
	DefaultRingMinSize     = 1024
	DefaultRingMaxSize     = 8 * 1024 * 1024
	DefaultMaglevTableSize = 65537
)

// New returns a balancer for c, holding c.LoadAssignment's endpoints when
// the cluster carries them (STATIC and DNS clusters); EDS clusters start
// empty until Update. LBClusterProvided (ORIGINAL_DST) clusters have no
// endpoint set to balance over and get least-request, as does any policy
// the proxy does not know.
func New(c *xdsresource.Cluster, opts ...Option) *Balancer {
	b := &Balancer{
		policy:     c.LBPolicy,
		rand:       runtimeRand{},
		ringMin:    c.RingMinSize,
		ringMax:    DefaultRingMaxSize,
		maglevSize: c.MaglevTableSize,
		hosts:      map[string]*Host{},
		rr:         map[uint64]*counter{},

		panicThreshold: DefaultPanicThreshold,

		localityWeighted: c.LocalityWeighted,
		slow:             newSlowStart(c),
		clock:            monotonic,
	}
	switch b.policy {
	case xdsresource.LBRoundRobin, xdsresource.LBLeastRequest, xdsresource.LBRandom,
		xdsresource.LBRingHash, xdsresource.LBMaglev:
	default:
		b.policy = xdsresource.LBLeastRequest
	}
	if b.ringMin == 0 {
		b.ringMin = DefaultRingMinSize
	}
	if b.ringMin > b.ringMax {
		b.ringMin = b.ringMax
	}
	if b.maglevSize == 0 {
		b.maglevSize = DefaultMaglevTableSize
	}
	b.maglevSize = nextPrime(b.maglevSize)
	b.applyOutlier(c)
	for _, o := range opts {
		o(b)
	}
	b.snap.Store(&snapshot{})
	if c.LoadAssignment != nil {
		b.Update(c.LoadAssignment)
	}
	return b
}

// Hosts returns the current host set: every endpoint of the assignment,
// healthy or not, lowest priority first. The slice is shared and must not
// be modified.
func (b *Balancer) Hosts() []*Host { return b.snap.Load().hosts }

// Update replaces the host set with cla's endpoints (nil: an empty set,
// and Pick returns nil) and recomputes how traffic splits between
// priority levels (see priorityLoad) and, within each level that takes
// any, over which hosts: the healthy ones, or all of them in panic.
// Hosts whose address, port and identity stay keep their state, whatever
// their priority or health. Once Update returns, no Pick that starts
// afterwards returns a host the update removed, and a Pick already
// running retries if it reads the host's removed mark. (A Pick that read
// the mark just before Update set it can still hand the host out a moment
// after Update returns; that is inherent to a lock-free reader, and
// Removed lets the caller check again before dialling or reusing a pooled
// connection.)
func (b *Balancer) Update(cla *xdsresource.ClusterLoadAssignment) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.update(b.outlierView(cla))
}

// update is Update with b.mu held, cla as outlier detection leaves it.
func (b *Balancer) update(cla *xdsresource.ClusterLoadAssignment) {
	groups := groupPriorities(cla)
	n := 0
	for _, g := range groups {
		n += len(g)
	}
	next := make(map[string]*Host, n)
	all := make([]*Host, 0, n)
	type group struct {
		priority uint32
		eps      []weightedEndpoint // deduplicated, healthy or not
		hosts    []*Host
	}
	gs := make([]group, len(groups))
	healthy, degraded, total := make([]int, len(groups)), make([]int, len(groups)), make([]int, len(groups))
	var buf []byte
	for gi, eps := range groups {
		g := &gs[gi]
		g.priority = eps[0].loc.Priority
		g.eps = eps[:0]
		for _, ep := range eps {
			// Look the host up by a reused buffer so that an update which
			// keeps most hosts does not allocate an address string for each.
			buf = appendAddr(buf[:0], ep.ep.Address, ep.ep.Port)
			if _, dup := next[string(buf)]; dup {
				continue // first occurrence wins; Envoy rejects duplicates in one level
			}
			h := b.hosts[string(buf)]
			isNew := h == nil
			addr := ""
			if h != nil {
				addr = h.addr
			} else {
				addr = string(buf)
			}
			if h == nil || !sameIdentity(h, ep) {
				h = &Host{
					Address: ep.ep.Address, Port: ep.ep.Port,
					Region: ep.loc.Region, Zone: ep.loc.Zone, SubZone: ep.loc.SubZone,
					Workload: ep.ep.Workload, Namespace: ep.ep.Namespace, ServiceAccount: ep.ep.ServiceAccount, Peer: ep.ep.Peer,
					TLSMode: ep.ep.TLSMode, Proxyless: ep.ep.Proxyless,
					addr: addr, ewma: b.ewma,
				}
				if b.ewma != nil {
					h.rttNanos.Store(float64bits(float64(b.ewma.defaultRTT)))
					h.rttUpdate.Store(b.ewma.now())
				}
			}
			h.healthy.Store(ep.ep.Healthy)
			h.degraded.Store(ep.ep.Degraded && !ep.ep.Healthy)
			h.weight.Store(max(ep.ep.Weight, 1))
			h.priority.Store(g.priority)
			b.noteHost(h, isNew)
			next[addr] = h
			all = append(all, h)
			g.eps = append(g.eps, ep)
			g.hosts = append(g.hosts, h)
			total[gi]++
			if ep.ep.Healthy {
				healthy[gi]++
			} else if ep.ep.Degraded {
				degraded[gi]++
			}
		}
	}

	load, degLoad, inPanic := tierLoad(healthy, degraded, total, b.panicThreshold)
	s := &snapshot{hosts: all}
	for gi := range gs {
		s.addPriority(gs[gi].priority, gs[gi].hosts) // retry.go
	}
	rr := make(map[uint64]*counter, len(gs))
	tierCounter := func(priority uint32, degraded bool) *counter {
		k := tierKey(priority, degraded)
		c := b.rr[k]
		if c == nil {
			c = new(counter)
			c.n.Store(b.rand.Uint64())
		}
		rr[k] = c
		return c
	}
	for gi := range gs {
		g := &gs[gi]
		if inPanic[gi] {
			// All hosts, whatever their health, with both shares.
			weights := make([]uint32, len(g.hosts))
			for i, h := range g.hosts {
				weights[i] = h.Weight()
			}
			s.addLevel(b, g.hosts, weights, load[gi]+degLoad[gi], tierCounter(g.priority, false))
			continue
		}
		for _, deg := range []bool{false, true} {
			var eps []weightedEndpoint
			var hosts []*Host
			for i, ep := range g.eps {
				if (!deg && ep.ep.Healthy) || (deg && ep.ep.Degraded && !ep.ep.Healthy) {
					eps = append(eps, ep)
					hosts = append(hosts, g.hosts[i])
				}
			}
			if len(hosts) == 0 {
				continue
			}
			l := load[gi]
			if deg {
				l = degLoad[gi]
			}
			s.addTier(b, hosts, eps, deg, l, tierCounter(g.priority, deg)) // locality.go
		}
	}
	if len(s.levels) > 1 {
		s.choose = make([]int32, 0, 100)
		for i, l := range s.load {
			for range l {
				s.choose = append(s.choose, int32(i))
			}
		}
	}
	b.snap.Store(s)
	b.rr = rr
	for addr, h := range b.hosts {
		if next[addr] != h {
			h.removed.Store(true)
		}
	}
	b.hosts = next
	b.populated = b.populated || len(all) > 0
}

// appendAddr appends host:port as net.JoinHostPort would write it.
func appendAddr(b []byte, host string, port uint32) []byte {
	if strings.IndexByte(host, ':') >= 0 {
		b = append(append(append(b, '['), host...), ']')
	} else {
		b = append(b, host...)
	}
	return strconv.AppendUint(append(b, ':'), uint64(port), 10)
}

func sameIdentity(h *Host, ep weightedEndpoint) bool {
	return h.Workload == ep.ep.Workload && h.Namespace == ep.ep.Namespace && h.Peer == ep.ep.Peer &&
		h.ServiceAccount == ep.ep.ServiceAccount && h.TLSMode == ep.ep.TLSMode && h.Proxyless == ep.ep.Proxyless && h.Region == ep.loc.Region &&
		h.Zone == ep.loc.Zone && h.SubZone == ep.loc.SubZone
}

// Pick returns a host for one request, or nil when the set is empty (the
// proxy answers 503 with flag UH). hash is the request's consistent hash
// (as the router computes it from the route's hash policies) and is used
// only by RING_HASH and MAGLEV, and only when hasHash; without one they
// pick at random, as Envoy does.
//
// With traffic split between priority levels, Pick first chooses a level
// by the split, from the hash for the hash policies (so a key stays on
// one level while the split holds, as in Envoy), at random otherwise;
// then it runs the policy over that level's hosts.
func (b *Balancer) Pick(hash uint64, hasHash bool) *Host {
	hashed := b.policy == xdsresource.LBRingHash || b.policy == xdsresource.LBMaglev
	if hashed && !hasHash {
		hash = b.rand.Uint64()
	}
	for {
		s := b.snap.Load()
		if len(s.levels) == 0 {
			return nil
		}
		l := &s.levels[0]
		if s.choose != nil {
			var r uint64
			if hashed {
				r = mix(hash)
			} else {
				r = b.rand.Uint64()
			}
			l = &s.levels[s.choose[bounded(r, uint64(len(s.choose)))]]
		}
		l, h := b.refine(l) // by locality, and slow start (locality.go, slowstart.go)
		switch {
		case h != nil:
		case b.policy == xdsresource.LBRoundRobin:
			h = l.hosts[l.roundRobin(l.rr.n.Add(1))]
		case b.policy == xdsresource.LBRandom:
			h = l.hosts[l.sample(b.rand.Uint64())]
		case b.policy == xdsresource.LBRingHash:
			h = l.hosts[l.ringLookup(hash)]
		case b.policy == xdsresource.LBMaglev:
			h = l.hosts[l.maglev[hash%uint64(len(l.maglev))]]
		default:
			h = b.pickLeastRequest(l)
		}
		if !h.removed.Load() {
			return h
		}
	}
}

// mix is SplitMix64's finaliser. The level is chosen from mix(hash) so
// that the choice does not correlate with where hash falls on the level's
// ring or table.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// snapshot is one immutable host set: every host, and the priority levels
// that take traffic with their shares.
type snapshot struct {
	hosts  []*Host  // all hosts, for Hosts
	levels []level  // levels with a share of traffic, by priority
	load   []uint32 // each level's share, in percent
	// choose maps a uniform percentile to an index in levels; nil when
	// one level takes all traffic.
	choose []int32
	// prios are the healthy hosts of each priority, lowest first, for
	// retries that leave priorities out (retry.go).
	prios []priorityHosts
}

// addLevel adds hosts as a level taking load percent of traffic, unless
// that is none.
func (s *snapshot) addLevel(b *Balancer, hosts []*Host, weights []uint32, load uint32, rr *counter) {
	if load == 0 || len(hosts) == 0 {
		return
	}
	s.levels = append(s.levels, b.build(hosts, weights, rr))
	s.load = append(s.load, load)
}

// level is one priority level's hosts (its healthy ones, or all in
// panic) with the lookup structures its policy needs.
type level struct {
	hosts   []*Host
	weights []uint32
	equal   bool // all weights equal: uniform paths, no tables
	// Walker/Vose alias table, when !equal: weighted sampling in O(1)
	// with one random number, where a binary search over prefix sums
	// costs a branch mispredict per level (110 ns at 1,000 hosts).
	aliasCut []uint64 // keep i when the coin is below aliasCut[i]
	alias    []int32  // else take alias[i]

	rr    *counter
	sched []int32 // round-robin schedule, when !equal

	ringHash []uint64 // sorted ring points
	ringHost []int32  // host of each point

	maglev []int32

	// locs split the level by locality for locality-weighted picks,
	// chosen by locCut/locAlias (locality.go); slow holds its hosts in
	// slow start (slowstart.go).
	locs     []level
	locCut   []uint64
	locAlias []int32
	slow     *slowLevel
}

func (b *Balancer) build(hosts []*Host, weights []uint32, rr *counter) level {
	s := level{hosts: hosts, weights: weights, equal: true, rr: rr}
	for _, w := range weights {
		if w != weights[0] {
			s.equal = false
		}
	}
	if len(hosts) == 0 {
		return s
	}
	if !s.equal {
		s.aliasCut, s.alias = buildAlias(weights)
	}
	switch b.policy {
	case xdsresource.LBRoundRobin:
		if !s.equal {
			s.sched = buildSchedule(weights, maxSchedule)
		}
	case xdsresource.LBRingHash:
		s.ringHash, s.ringHost = buildRing(hosts, weights, b.ringMin, b.ringMax)
	case xdsresource.LBMaglev:
		s.maglev = buildMaglev(hosts, weights, b.maglevSize)
	}
	return s
}

// bounded maps a uniform 64-bit r onto [0, n) without division (Lemire).
func bounded(r, n uint64) uint64 {
	hi, _ := bits.Mul64(r, n)
	return hi
}

// sample picks an index with probability proportional to its weight.
// The high half of r*n picks a column and the low half, uniform given the
// column, is the alias coin, so one random number does both.
func (s *level) sample(r uint64) int {
	i, coin := bits.Mul64(r, uint64(len(s.hosts)))
	if s.equal || coin < s.aliasCut[i] {
		return int(i)
	}
	return int(s.alias[i])
}

// buildAlias builds Vose's alias table: column i keeps itself with
// probability cut[i]/2^64 and otherwise yields alias[i], every column
// equally likely.
func buildAlias(weights []uint32) ([]uint64, []int32) {
	n := len(weights)
	var total float64
	for _, w := range weights {
		total += float64(w)
	}
	p := make([]float64, n)
	var small, large []int32
	for i, w := range weights {
		p[i] = float64(w) * float64(n) / total
		if p[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	cut := make([]uint64, n)
	alias := make([]int32, n)
	for len(small) > 0 && len(large) > 0 {
		l, g := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		cut[l] = uint64(p[l] * (1 << 64))
		alias[l] = g
		p[g] -= 1 - p[l]
		if p[g] < 1 {
			large = large[:len(large)-1]
			small = append(small, g)
		}
	}
	// What remains is 1 up to rounding: always keep.
	for _, i := range append(small, large...) {
		cut[i] = math.MaxUint64
		alias[i] = i
	}
	return cut, alias
}

func (s *level) roundRobin(n uint64) int {
	if s.equal {
		return int(n % uint64(len(s.hosts)))
	}
	return int(s.sched[n%uint64(len(s.sched))])
}

// pickLeastRequest is power of two choices: two candidates, the one with
// fewer active requests (or, with peak EWMA, the lower cost) wins, ties
// going to the first.
//
// The candidates are distinct, as in Finagle and Linkerd. Envoy samples
// with replacement, which hands even the most loaded host 1/n² of the
// requests; distinct candidates never send to the worst host while a
// better one exists.
//
// With unequal weights Envoy runs an EDF scheduler over the effective
// weight w/(active+1)^bias, which needs a lock. We split that formula
// instead: the candidates are sampled in proportion to w, and compared by
// the remaining factor 1/(active+1)^bias. For a choice between two, any
// positive bias orders the candidates the same way (by active), so the
// bias is in effect Envoy's default of 1. Sampling by weight keeps an
// idle cluster's traffic exactly proportional to weight, as EDF does;
// comparing w/(active+1) directly would give the heavier host every tie
// and push idle traffic far past its weight.
func (b *Balancer) pickLeastRequest(s *level) *Host {
	n := len(s.hosts)
	i := s.sample(b.rand.Uint64())
	if n == 1 {
		return s.hosts[i]
	}
	var j int
	if s.equal {
		j = (i + 1 + int(bounded(b.rand.Uint64(), uint64(n-1)))) % n
	} else {
		// A dominant host can draw itself repeatedly; after a few tries
		// it is simply the pick, which is what its weight asks for.
		j = i
		for try := 0; try < 4 && j == i; try++ {
			j = s.sample(b.rand.Uint64())
		}
	}
	a, c := s.hosts[i], s.hosts[j]
	if b.ewma != nil {
		if c.logCost() < a.logCost() {
			return c
		}
		return a
	}
	if c.active.Load() < a.active.Load() {
		return c
	}
	return a
}

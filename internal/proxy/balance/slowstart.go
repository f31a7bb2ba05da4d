package balance

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Slow start is Envoy's slow_start_config on ROUND_ROBIN and
// LEAST_REQUEST clusters (istiod's warmup): a host that joins the cluster
// after its first endpoints gets, for the window after it first turns
// healthy, its weight times
//
//	max(min_weight_percent, (age / window) ^ (1 / aggression))
//
// (age at least 1 ms), so its share grows from min_weight_percent to all
// of it. Hosts present when the balancer first gets endpoints are not
// warmed: they would all ramp alike, which changes nothing (Envoy's
// docs say as much of a new deployment).
//
// The weights change with time, so the precomputed tables cannot hold
// them. A level with hosts in their window keeps the other hosts in a
// level of their own (steady: fixed weights, the usual tables) and the
// warming ones in a short list whose weights are computed at each pick:
// one random number chooses between the steady total and each warming
// host's current weight. That is a few multiplications per warming host,
// with no allocation and no lock; once the last window ends the level is
// marked and picks take the plain path again, until the next update
// rebuilds it without the list.

// slowStart is a cluster's slow start configuration.
type slowStart struct {
	window    int64   // nanoseconds
	invAggr   float64 // 1 / aggression
	minFactor float64 // min_weight_percent / 100
}

// Host.joined: when the host's slow start began (monotonic nanoseconds);
// 0 for a host never warmed (present from the start, or no slow start),
// joinedPending for one that joined later but is not healthy yet.
const joinedPending = -1

// clockBase anchors the default monotonic clock.
var clockBase = time.Now()

func monotonic() int64 { return int64(time.Since(clockBase)) }

// WithClock replaces the clock slow start reads (for tests): now returns
// a monotonic time.
func WithClock(now func() time.Duration) Option {
	return func(b *Balancer) { b.clock = func() int64 { return int64(now()) } }
}

// newSlowStart is nil unless c asks for slow start on a policy that has
// it.
func newSlowStart(c *xdsresource.Cluster) *slowStart {
	ss := c.SlowStart
	if ss == nil || ss.Window <= 0 || (c.LBPolicy != xdsresource.LBRoundRobin && c.LBPolicy != xdsresource.LBLeastRequest) {
		return nil
	}
	return &slowStart{window: int64(ss.Window), invAggr: 1 / ss.Aggression, minFactor: ss.MinWeightPercent / 100}
}

// factor is the share of its weight a host gets age into its slow start.
func (s *slowStart) factor(age int64) float64 {
	if age >= s.window {
		return 1
	}
	t := float64(max(age, int64(time.Millisecond))) / float64(s.window)
	if s.invAggr != 1 {
		t = math.Pow(t, s.invAggr)
	}
	return min(1, max(s.minFactor, t))
}

// noteHost records when h's slow start begins: a host new to a balancer
// that already had endpoints is pending until it is healthy, and warms
// from then on.
func (b *Balancer) noteHost(h *Host, isNew bool) {
	if b.slow == nil {
		return
	}
	if isNew && b.populated {
		h.joined.Store(joinedPending)
	}
	if h.joined.Load() == joinedPending && h.healthy.Load() {
		h.joined.Store(max(b.clock(), 1))
	}
}

// slowLevel is the part of a level that is warming.
type slowLevel struct {
	until       int64 // the last window's end
	over        atomic.Bool
	steady      *level  // the other hosts, nil if none
	steadyTotal float64 // their summed weight
	hosts       []*Host // warming hosts
	base        []float64
}

// attachSlowStart gives l the warming hosts among its hosts, if any.
func (b *Balancer) attachSlowStart(l *level) {
	if b.slow == nil {
		return
	}
	now := b.clock()
	ss := &slowLevel{}
	var steadyHosts []*Host
	var steadyWeights []uint32
	for i, h := range l.hosts {
		if j := h.joined.Load(); j > 0 && now-j < b.slow.window {
			ss.hosts = append(ss.hosts, h)
			ss.base = append(ss.base, float64(l.weights[i]))
			ss.until = max(ss.until, j+b.slow.window)
			continue
		}
		steadyHosts = append(steadyHosts, h)
		steadyWeights = append(steadyWeights, l.weights[i])
		ss.steadyTotal += float64(l.weights[i])
	}
	if len(ss.hosts) == 0 {
		return
	}
	if len(steadyHosts) > 0 {
		st := b.build(steadyHosts, steadyWeights, l.rr)
		ss.steady = &st
	}
	l.slow = ss
}

// refine narrows a chosen level to a locality (when it is split by
// locality) and, while some of its hosts warm, picks the host itself;
// h is nil when the plain policy should pick from the returned level.
func (b *Balancer) refine(l *level) (*level, *Host) {
	if l.locs != nil {
		l = l.locality(b.rand.Uint64())
	}
	if l.slow == nil || l.slow.over.Load() {
		return l, nil
	}
	return l, b.pickSlow(l)
}

// pickSlow picks from a level with warming hosts, or returns nil once
// their windows are over.
func (b *Balancer) pickSlow(l *level) *Host {
	ss := l.slow
	now := b.clock()
	if now >= ss.until {
		ss.over.Store(true)
		return nil
	}
	total := ss.steadyTotal
	for i, h := range ss.hosts {
		total += ss.base[i] * b.slow.factor(now-h.joined.Load())
	}
	a := b.slowCandidate(ss, now, total)
	if b.policy != xdsresource.LBLeastRequest {
		return a
	}
	// Least request: a second candidate by the same weights, the one with
	// fewer requests in flight wins (see pickLeastRequest).
	c := a
	for try := 0; try < 4 && c == a; try++ {
		c = b.slowCandidate(ss, now, total)
	}
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

// slowCandidate draws a host by current weight: the steady hosts as a
// whole (then one of them by the level's policy), or a warming one.
func (b *Balancer) slowCandidate(ss *slowLevel, now int64, total float64) *Host {
	r := float64(b.rand.Uint64()>>11) / (1 << 53) * total
	if r < ss.steadyTotal && ss.steady != nil {
		st := ss.steady
		if b.policy == xdsresource.LBRoundRobin {
			return st.hosts[st.roundRobin(st.rr.n.Add(1))]
		}
		return st.hosts[st.sample(b.rand.Uint64())]
	}
	r -= ss.steadyTotal
	for i, h := range ss.hosts {
		w := ss.base[i] * b.slow.factor(now-h.joined.Load())
		if r < w {
			return h
		}
		r -= w
	}
	return ss.hosts[len(ss.hosts)-1]
}

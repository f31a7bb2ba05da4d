package balance

import (
	"math"
	"time"
)

// Peak EWMA (Finagle's PeakEwma, as Linkerd's balancer uses it) is not an
// Envoy policy; it is offered because least-request alone cannot tell a
// fast host from a slow one at low concurrency, where active counts are
// mostly 0 and 1.

// Linkerd's peak-EWMA defaults (linkerd2-proxy's EWMA_DECAY and
// EWMA_DEFAULT_RTT), used when WithPeakEWMA is given zero.
const (
	DefaultEWMADecay = 10 * time.Second
	DefaultEWMARTT   = 30 * time.Millisecond
)

type ewmaConfig struct {
	tau        float64 // decay time constant, ns
	defaultRTT time.Duration
	now        func() int64 // monotonic ns
}

// WithPeakEWMA makes LEAST_REQUEST compare latency_estimate * (active+1)
// instead of active alone. The estimate jumps to any slower sample at
// once (so a host that turns slow is avoided immediately) and otherwise
// moves toward new samples, and toward zero while the host is idle, with
// time constant decay (Linkerd uses 10s). New hosts start at defaultRTT
// rather than zero so they are not flooded before their first response.
// Other policies are chosen explicitly by the cluster and ignore it.
func WithPeakEWMA(decay, defaultRTT time.Duration) Option {
	if decay <= 0 {
		decay = DefaultEWMADecay
	}
	if defaultRTT <= 0 {
		defaultRTT = DefaultEWMARTT
	}
	return func(b *Balancer) {
		start := time.Now()
		b.ewma = &ewmaConfig{
			tau:        float64(decay),
			defaultRTT: defaultRTT,
			now:        func() int64 { return int64(time.Since(start)) },
		}
	}
}

// withClock replaces the EWMA clock, for tests.
func withClock(now func() int64) Option {
	return func(b *Balancer) { b.ewma.now = now }
}

// observe folds one latency sample into the estimate. Concurrent samples
// may overwrite each other; losing one of two simultaneous samples does not
// matter to an average and keeps Done lock-free.
func (h *Host) observe(latency time.Duration) {
	now := h.ewma.now()
	prev := float64frombits(h.rttNanos.Load())
	rtt := float64(latency)
	next := rtt
	if rtt < prev {
		w := h.decay(now)
		next = prev*w + rtt*(1-w)
	}
	h.rttNanos.Store(float64bits(next))
	h.rttUpdate.Store(now)
}

func (h *Host) decay(now int64) float64 {
	elapsed := float64(max(0, now-h.rttUpdate.Load()))
	return math.Exp(-elapsed / h.ewma.tau)
}

// logCost orders hosts by their expected wait for one more request,
// rtt * e^(-(now-updated)/tau) * (active+1), without reading the clock:
// taking the log and adding now/tau to both sides of a comparison leaves
// ln(rtt*(active+1)) + updated/tau, the same order for any now. Picks
// stay clock-free, and Done, which runs once per request anyway, is the
// only place that reads time.
func (h *Host) logCost() float64 {
	// A floor of 1ns keeps active counts in play between hosts whose
	// samples were all 0 (log 0 would tie them at -Inf).
	rtt := max(float64frombits(h.rttNanos.Load()), 1)
	return math.Log(rtt*float64(h.active.Load()+1)) + float64(h.rttUpdate.Load())/h.ewma.tau
}

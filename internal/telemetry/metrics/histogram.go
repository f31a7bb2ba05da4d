package metrics

import "sync/atomic"

// Buckets are Envoy's default histogram bounds, which Istio's standard
// metrics use for durations (ms) and sizes (bytes) alike.
var Buckets = [...]float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// histogram counts observations per bucket (not cumulative: the writer
// adds them up) and their sum, in the unit's integer base (nanoseconds
// for durations, bytes for sizes), so that adding is atomic.
type histogram struct {
	counts [len(Buckets) + 1]atomic.Uint64 // the last is +Inf only
	sum    atomic.Uint64
}

func (h *histogram) observe(v float64, raw uint64) {
	i := 0
	for i < len(Buckets) && v > Buckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(raw)
}

package balance

// maxSchedule bounds a weighted round-robin schedule (4 bytes an entry).
const maxSchedule = 1 << 16

// buildSchedule precomputes one period of weighted round robin so that
// Pick is an atomic increment and an index, with no lock. Envoy instead
// runs an earliest-deadline-first scheduler per worker thread; the
// schedule here is that same EDF order, replayed: host i's k-th turn is
// due at (k+1/2)/w_i (the half step staggers light hosts between heavy
// ones instead of bunching them at the end of the period, so weights
// 5,1,1 give a a a b c a a), ties going to the lower index.
//
// Weights are divided by their GCD, so the period is their reduced sum.
// Past max entries they are scaled down (each host keeps at least one
// turn), trading exact ratios for bounded memory.
func buildSchedule(weights []uint32, maxLen int) []int32 {
	g := uint64(0)
	for _, w := range weights {
		g = gcd(g, uint64(w))
	}
	w := make([]uint64, len(weights))
	var total uint64
	for i, x := range weights {
		w[i] = uint64(x) / g
		total += w[i]
	}
	limit := uint64(max(maxLen, len(weights)))
	if total > limit {
		scale := float64(limit) / float64(total)
		total = 0
		for i := range w {
			w[i] = max(1, uint64(float64(w[i])*scale))
			total += w[i]
		}
	}
	// A binary heap of hosts ordered by the deadline (2*turn+1)/(2*w).
	turn := make([]uint64, len(w))
	heap := make([]int32, len(w))
	for i := range heap {
		heap[i] = int32(i)
	}
	less := func(a, b int32) bool {
		da, db := (2*turn[a]+1)*w[b], (2*turn[b]+1)*w[a]
		if da != db {
			return da < db
		}
		return a < b
	}
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= len(heap) {
				return
			}
			m := l
			if r := l + 1; r < len(heap) && less(heap[r], heap[l]) {
				m = r
			}
			if !less(heap[m], heap[i]) {
				return
			}
			heap[i], heap[m] = heap[m], heap[i]
			i = m
		}
	}
	for i := len(heap)/2 - 1; i >= 0; i-- {
		down(i)
	}
	sched := make([]int32, 0, total)
	for range total {
		h := heap[0]
		sched = append(sched, h)
		turn[h]++
		down(0)
	}
	return sched
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

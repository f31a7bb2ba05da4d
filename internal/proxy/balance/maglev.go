package balance

import "github.com/trellismesh/trellis/internal/proxy/xxhash"

// buildMaglev fills a Maglev lookup table (Eisenbud et al., NSDI 2016,
// "Maglev: A Fast and Reliable Software Network Load Balancer", §3.4)
// with Envoy's weighting: each host walks its own permutation of the
// table (offset + j*skip mod size, from two seeded hashes of its
// address) and claims the next free slot when its turn comes. A host of
// the highest weight takes a turn in every round; one of a third of that
// weight in every third round. size must be prime so every skip
// generates a full permutation.
func buildMaglev(hosts []*Host, weights []uint32, size uint64) []int32 {
	type entry struct {
		offset, skip, next uint64
		target             uint64
	}
	var maxW uint64
	for _, w := range weights {
		maxW = max(maxW, uint64(w))
	}
	es := make([]entry, len(hosts))
	for i, h := range hosts {
		es[i].offset = xxhash.Sum64(h.addr, 0) % size
		es[i].skip = xxhash.Sum64(h.addr, 1)%(size-1) + 1
	}
	table := make([]int32, size)
	for i := range table {
		table[i] = -1
	}
	filled := uint64(0)
	for round := uint64(0); ; round++ {
		for i := range es {
			e := &es[i]
			// Integer form of Envoy's round*normalized_weight < target.
			if round*uint64(weights[i]) < e.target {
				continue
			}
			e.target += maxW
			c := (e.offset + e.skip*e.next) % size
			for table[c] >= 0 {
				e.next++
				c = (e.offset + e.skip*e.next) % size
			}
			table[c] = int32(i)
			e.next++
			filled++
			if filled == size {
				return table
			}
		}
	}
}

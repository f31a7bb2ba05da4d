package balance

import (
	"math"
	"slices"
	"strconv"
)

// buildRing builds Envoy's ketama ring: each host gets points in
// proportion to its weight, at xxHash64("address:port_i") for i = 0, 1, …
// The ring is scaled, as Envoy scales it, so the lightest host gets at
// least minSize*its share points, capped at maxSize points in all. The
// points and their hosts are kept in two slices so the binary search in
// Pick walks 8-byte keys only.
func buildRing(hosts []*Host, weights []uint32, minSize, maxSize uint64) ([]uint64, []int32) {
	var total float64
	minW := uint32(math.MaxUint32)
	for _, w := range weights {
		total += float64(w)
		minW = min(minW, w)
	}
	minNorm := float64(minW) / total
	scale := min(math.Ceil(minNorm*float64(minSize))/minNorm, float64(maxSize))

	type point struct {
		hash uint64
		host int32
	}
	points := make([]point, 0, int(scale)+len(hosts))
	var buf []byte
	var target float64
	var current uint64
	for i, h := range hosts {
		target += scale * float64(weights[i]) / total
		for j := uint64(0); float64(current) < target; j++ {
			buf = append(append(buf[:0], h.addr...), '_')
			buf = strconv.AppendUint(buf, j, 10)
			points = append(points, point{xxh64(buf, 0), int32(i)})
			current++
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.host - b.host) // equal hashes: deterministic order
	})
	hs := make([]uint64, len(points))
	ids := make([]int32, len(points))
	for i, p := range points {
		hs[i], ids[i] = p.hash, p.host
	}
	return hs, ids
}

// ringLookup returns the host of the first point at or after hash,
// wrapping around the ring.
func (s *snapshot) ringLookup(hash uint64) int {
	lo, hi := 0, len(s.ringHash)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.ringHash[m] < hash {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(s.ringHash) {
		lo = 0
	}
	return int(s.ringHost[lo])
}

package balance

import (
	"github.com/trellismesh/trellis/internal/proxy/xxhash"
	"math"
	"math/bits"
	"slices"
	"strconv"
)

// buildRing builds a ketama ring: each host gets points in proportion to
// its weight, at xxHash64("address:port_i") for i = 0, 1, …
//
// Sizing differs from Envoy's on purpose. Envoy gives the lightest host
// ceil(minSize*its share) points, so with equal weights each host has
// ceil(1024/n): going from 10 hosts to 9 lifts every host from 103 to 114
// points, and those new points take keys from hosts that stayed (about
// twice the 1/n that consistent hashing promises). Rounding the lightest
// host's count up to a power of two keeps per-host counts fixed across
// most membership changes, so removing one host moves only its own keys,
// at the price of a ring up to twice the minimum. Points beyond maxSize
// are scaled down proportionally. The points and their hosts are kept in
// two slices so the binary search in Pick walks 8-byte keys only.
func buildRing(hosts []*Host, weights []uint32, minSize, maxSize uint64) ([]uint64, []int32) {
	var total float64
	minW := uint32(math.MaxUint32)
	for _, w := range weights {
		total += float64(w)
		minW = min(minW, w)
	}
	lightest := uint64(math.Ceil(float64(minSize) * float64(minW) / total))
	perMin := float64(uint64(1) << bits.Len64(max(lightest, 1)-1))
	counts := make([]uint64, len(hosts))
	var size uint64
	for i, w := range weights {
		counts[i] = uint64(math.Round(perMin * float64(w) / float64(minW)))
		size += counts[i]
	}
	if size > maxSize {
		f := float64(maxSize) / float64(size)
		size = 0
		for i := range counts {
			counts[i] = max(1, uint64(float64(counts[i])*f))
			size += counts[i]
		}
	}

	type point struct {
		hash uint64
		host int32
	}
	points := make([]point, 0, size)
	var buf []byte
	for i, h := range hosts {
		for j := range counts[i] {
			buf = append(append(buf[:0], h.addr...), '_')
			buf = strconv.AppendUint(buf, j, 10)
			points = append(points, point{xxhash.Sum64(buf, 0), int32(i)})
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
func (s *level) ringLookup(hash uint64) int {
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

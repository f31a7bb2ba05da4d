package xxhash

import "math/bits"

const (
	xxPrime1 uint64 = 11400714785074694791
	xxPrime2 uint64 = 14029467366897019727
	xxPrime3 uint64 = 1609587929392839161
	xxPrime4 uint64 = 9650029242287828579
	xxPrime5 uint64 = 2870177450012600261
)

// Sum64 returns the XXH64 hash of b with seed.
func Sum64[T string | []byte](b T, seed uint64) uint64 {
	n := len(b)
	p := 0
	var h uint64
	if n >= 32 {
		v1 := seed + xxPrime1 + xxPrime2
		v2 := seed + xxPrime2
		v3 := seed
		v4 := seed - xxPrime1
		for ; p+32 <= n; p += 32 {
			v1 = xxRound(v1, le64(b, p))
			v2 = xxRound(v2, le64(b, p+8))
			v3 = xxRound(v3, le64(b, p+16))
			v4 = xxRound(v4, le64(b, p+24))
		}
		h = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) + bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		h = xxMerge(h, v1)
		h = xxMerge(h, v2)
		h = xxMerge(h, v3)
		h = xxMerge(h, v4)
	} else {
		h = seed + xxPrime5
	}
	h += uint64(n)
	for ; p+8 <= n; p += 8 {
		h ^= xxRound(0, le64(b, p))
		h = bits.RotateLeft64(h, 27)*xxPrime1 + xxPrime4
	}
	if p+4 <= n {
		h ^= uint64(le32(b, p)) * xxPrime1
		h = bits.RotateLeft64(h, 23)*xxPrime2 + xxPrime3
		p += 4
	}
	for ; p < n; p++ {
		h ^= uint64(b[p]) * xxPrime5
		h = bits.RotateLeft64(h, 11) * xxPrime1
	}
	h ^= h >> 33
	h *= xxPrime2
	h ^= h >> 29
	h *= xxPrime3
	h ^= h >> 32
	return h
}

func xxRound(acc, input uint64) uint64 {
	acc += input * xxPrime2
	acc = bits.RotateLeft64(acc, 31)
	return acc * xxPrime1
}

func xxMerge(acc, val uint64) uint64 {
	acc ^= xxRound(0, val)
	return acc*xxPrime1 + xxPrime4
}

func le64[T string | []byte](b T, p int) uint64 {
	return uint64(le32(b, p)) | uint64(le32(b, p+4))<<32
}

func le32[T string | []byte](b T, p int) uint32 {
	return uint32(b[p]) | uint32(b[p+1])<<8 | uint32(b[p+2])<<16 | uint32(b[p+3])<<24
}

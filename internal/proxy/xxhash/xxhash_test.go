package xxhash

import "testing"

func TestVectors(t *testing.T) {
	// Reference values from github.com/cespare/xxhash/v2 (XXH64, seed 0).
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"", 0xef46db3751d8e999},
		{"a", 0xd24ec4f1a98c6e5b},
		{"abc", 0x44bc2cf5ad770999},
		{"10.0.0.1:8080_3", 0x4ee48ac7956c6975},
		{"Nobody inspects the spammish repetition", 0xfbcea83c8a378bf1},
		{"0123456789abcdef0123456789abcdef", 0x642a94958e71e6c5},
		{"0123456789abcdef0123456789abcdef0123456789_x", 0xd4959fce6af06f63},
	} {
		if got := Sum64(tc.in, 0); got != tc.want {
			t.Errorf("Sum64(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
		if got := Sum64([]byte(tc.in), 0); got != tc.want {
			t.Errorf("Sum64([]byte(%q)) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
	if got := Sum64("10.0.0.1:80", 1); got != 0xa456919bcbffaa92 {
		t.Errorf("seeded hash %#x", got)
	}
}

func TestNoAllocs(t *testing.T) {
	s := "outbound|9080||reviews.default.svc.cluster.local"
	b := []byte(s)
	if n := testing.AllocsPerRun(100, func() { Sum64(s, 0); Sum64(b, 7) }); n != 0 {
		t.Fatalf("Sum64 allocates %v times", n)
	}
}

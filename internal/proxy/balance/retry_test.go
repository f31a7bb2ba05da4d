package balance

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// PickAvoiding leaves the tried priorities out: with priority 0 healthy
// (taking all traffic) a retry that tried it lands on priority 1, its
// unhealthy host never; with both tried, or nothing tried, it is Pick.
func TestPickAvoiding(t *testing.T) {
	b := newBalancer(t, xdsresource.LBRoundRobin, levels("HH", "HU", "H"))
	count := func(tried uint64) map[string]int {
		got := map[string]int{}
		for range 300 {
			h := b.PickAvoiding(0, false, tried)
			got[h.Addr()]++
		}
		return got
	}
	if d := cmp.Diff(map[string]int{"10.0.0.1:80": 150, "10.0.0.2:80": 150}, count(0)); d != "" {
		t.Errorf("nothing tried (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]int{"10.1.0.1:80": 300}, count(PriorityBit(0))); d != "" {
		t.Errorf("priority 0 tried (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]int{"10.2.0.1:80": 300}, count(PriorityBit(0)|PriorityBit(1))); d != "" {
		t.Errorf("priorities 0 and 1 tried (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]int{"10.0.0.1:80": 150, "10.0.0.2:80": 150}, count(PriorityBit(0)|PriorityBit(1)|PriorityBit(2))); d != "" {
		t.Errorf("all tried (-want +got):\n%s", d)
	}
	for _, h := range b.Hosts() {
		if want := uint32(h.Addr()[3] - '0'); h.Priority() != want {
			t.Errorf("%s: priority %d, want %d", h.Addr(), h.Priority(), want)
		}
	}
}

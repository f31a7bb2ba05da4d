package xds

import (
	"runtime"
	"testing"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

func clusterLayer(names ...string) *layer {
	res := make([]types.Resource, len(names))
	for i, n := range names {
		res[i] = &clusterv3.Cluster{Name: n}
	}
	return newLayer(names, res)
}

// A layer's diff cache must not keep the layer it was diffed from alive:
// pushes replace layers all the time, and a chain of them would grow by a
// whole mesh's resources per change (seen as ~28 MB per edit at 1,000
// services before the cache was keyed by version).
func TestOldLayersAreCollected(t *testing.T) {
	old := clusterLayer("a", "b")
	gone := weak.Make(old)
	cur := clusterLayer("a", "c")
	d := cur.diffFrom(old)
	if len(d.resources) != 1 || d.resources[0].GetName() != "c" || len(d.removed) != 1 || d.removed[0] != "b" {
		t.Fatalf("diff: %v removed %v", d.resources, d.removed)
	}
	old = nil
	runtime.GC()
	runtime.GC()
	if gone.Value() != nil {
		t.Fatal("a newer layer keeps the layer it was diffed from alive")
	}
	// The cached diff still answers for a client that was at the old version.
	if again := cur.diffFrom(clusterLayer("a", "b")); again != d {
		t.Fatal("diff from an equal layer was not served from the cache")
	}
	runtime.KeepAlive(cur)
}

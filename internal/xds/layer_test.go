package xds

import (
	"bytes"
	"runtime"
	"slices"
	"testing"
	"unsafe"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
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

func TestNameSet(t *testing.T) {
	var s nameSet
	if got := s.add([]string{"b", "a", "b", "c"}); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Errorf("add = %q, want the new names once, in request order", got)
	}
	if got := s.add([]string{"c", "d", "a"}); !slices.Equal(got, []string{"d"}) {
		t.Errorf("second add = %q, want [d]", got)
	}
	s.remove([]string{"a", "x", "c"})
	if got := slices.Collect(s.all); !slices.Equal(got, []string{"b", "d"}) {
		t.Errorf("after remove: %q, want [b d]", got)
	}
	for n, want := range map[string]bool{"a": false, "b": true, "c": false, "d": true, "": false} {
		if s.has(n) != want {
			t.Errorf("has(%q) = %v, want %v", n, !want, want)
		}
	}
	// Every stream of a mesh subscribing to the same names shares one copy
	// of each.
	var other nameSet
	other.add([]string{string([]byte("b"))})
	if unsafe.StringData(slices.Collect(other.all)[0]) != unsafe.StringData(slices.Collect(s.all)[0]) {
		t.Error("equal names in two sets are not interned")
	}
}

// A layer keeps resources packed only (the deterministic bytes its
// versions hash), not the translated messages, which are ten times the
// size; state-of-the-world streams get equal messages decoded from them.
func TestLayerKeepsOnlyPackedResources(t *testing.T) {
	orig := &clusterv3.Cluster{Name: "a", Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"trellis": {Fields: map[string]*structpb.Value{"x": structpb.NewStringValue("1"), "y": structpb.NewStringValue("2")}},
	}}}
	want := proto.Clone(orig)
	gone := weak.Make(orig)
	l := newLayer([]string{"a"}, []types.Resource{orig})
	orig = nil
	runtime.GC()
	runtime.GC()
	if gone.Value() != nil {
		t.Error("the layer keeps the translated message alive")
	}
	w := l.wire["a"]
	det, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if w.GetResource().GetTypeUrl() != "type.googleapis.com/envoy.config.cluster.v3.Cluster" || !bytes.Equal(w.GetResource().GetValue(), det) {
		t.Errorf("packed as %s %x, want the deterministic encoding", w.GetResource().GetTypeUrl(), w.GetResource().GetValue())
	}
	if got := l.resources()["a"]; !proto.Equal(got, want) {
		t.Errorf("decoded %v, want %v", got, want)
	}
	if m := merge(l, clusterLayer("b")); len(m.resources()) != 2 || !proto.Equal(m.resources()["a"], want) {
		t.Errorf("merged layer: %v", m.resources())
	}
}

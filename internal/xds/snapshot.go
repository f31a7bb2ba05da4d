package xds

import (
	"encoding/hex"
	"hash/fnv"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/translate"
)

// typeURLs are the resource types served, in ADS order.
var typeURLs = [...]string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

const numTypes = len(typeURLs)

func typeIndex(url string) int {
	for i, u := range typeURLs {
		if u == url {
			return i
		}
	}
	return -1
}

// cacheIndex picks the cache that answers a type: its own, or for a type
// Trellis does not serve (which every snapshot answers with nothing) the
// first.
func cacheIndex(url string) int {
	return max(typeIndex(url), 0)
}

// layer is one type's resources with a content hash per resource. Layers
// are immutable and shared: every proxy of a scope points at the same
// layers, so hashing happens once per scope and push, not once per proxy
// (go-control-plane's own Snapshot re-hashes for every node).
type layer struct {
	resources map[string]types.Resource
	versions  map[string]string
	version   string // hash over names and versions: equal layers, equal version

	// withTTL is what state-of-the-world watches read. Only grpc-go's
	// clients use SotW, so it is built on first use: a sidecar's merged
	// layer of thousands of clusters would otherwise carry a third map.
	ttlOnce sync.Once
	withTTL map[string]types.ResourceWithTTL

	// wire holds resources packed for delta responses, built on first
	// use and carried over from the layer this one replaced when the
	// version is unchanged, so an endpoint change packs one CLA, not all.
	wireMu sync.Mutex
	wire   map[string]*discoverygrpc.Resource
	// diffs caches diff(from, this) by from's version: every proxy of a
	// scope that was in sync with the same layer gets the same, shared
	// answer.
	diffs sync.Map // version string -> *layerDiff
}

var emptyLayer = newLayer(nil, nil)

func newLayer(names []string, res []types.Resource) *layer {
	l := &layer{
		resources: make(map[string]types.Resource, len(res)),
		versions:  make(map[string]string, len(res)),
	}
	for i, r := range res {
		l.add(names[i], r, hashResource(r))
	}
	l.seal()
	return l
}

func (l *layer) add(name string, r types.Resource, version string) {
	l.resources[name] = r
	l.versions[name] = version
}

func (l *layer) resourcesWithTTL() map[string]types.ResourceWithTTL {
	l.ttlOnce.Do(func() {
		l.withTTL = make(map[string]types.ResourceWithTTL, len(l.resources))
		for n, r := range l.resources {
			l.withTTL[n] = types.ResourceWithTTL{Resource: r}
		}
	})
	return l.withTTL
}

func (l *layer) seal() {
	names := make([]string, 0, len(l.versions))
	for n := range l.versions {
		names = append(names, n)
	}
	sort.Strings(names)
	h := fnv.New64a()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(l.versions[n]))
		h.Write([]byte{0})
	}
	l.version = hex.EncodeToString(h.Sum(nil))
}

// merge combines a shared layer with a proxy's own; an empty local layer
// costs nothing.
func merge(shared, local *layer) *layer {
	if len(local.resources) == 0 {
		return shared
	}
	if len(shared.resources) == 0 {
		return local
	}
	m := &layer{
		resources: make(map[string]types.Resource, len(shared.resources)+len(local.resources)),
		versions:  make(map[string]string, len(shared.resources)+len(local.resources)),
	}
	for _, src := range []*layer{shared, local} {
		for n, r := range src.resources {
			m.add(n, r, src.versions[n])
		}
	}
	m.seal()
	return m
}

func hashResource(r types.Resource) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return ""
	}
	h := fnv.New64a()
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// layers turns translated resources into one layer per type, in
// typeURLs order.
func layers(r *translate.Resources) [numTypes]*layer {
	return [numTypes]*layer{
		layerOf(r.Clusters, (*clusterv3.Cluster).GetName),
		layerOf(r.Endpoints, (*endpointv3.ClusterLoadAssignment).GetClusterName),
		layerOf(r.Listeners, (*listenerv3.Listener).GetName),
		layerOf(r.Routes, (*routev3.RouteConfiguration).GetName),
	}
}

func layerOf[T types.Resource](items []T, name func(T) string) *layer {
	names, res := make([]string, len(items)), make([]types.Resource, len(items))
	for i, it := range items {
		names[i], res[i] = name(it), it
	}
	return newLayer(names, res)
}

// snapshot implements cachev3.ResourceSnapshot over precomputed layers.
type snapshot struct {
	layers [numTypes]*layer
}

var _ cachev3.ResourceSnapshot = (*snapshot)(nil)

func (s *snapshot) layer(typeURL string) *layer {
	if i := typeIndex(typeURL); i >= 0 && s.layers[i] != nil {
		return s.layers[i]
	}
	return emptyLayer
}

func (s *snapshot) GetVersion(typeURL string) string { return s.layer(typeURL).version }

func (s *snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	return s.layer(typeURL).resourcesWithTTL()
}

func (s *snapshot) GetResources(typeURL string) map[string]types.Resource {
	return s.layer(typeURL).resources
}

// ConstructVersionMap is a no-op: versions are computed when layers are built.
func (s *snapshot) ConstructVersionMap() error { return nil }

func (s *snapshot) GetVersionMap(typeURL string) map[string]string { return s.layer(typeURL).versions }

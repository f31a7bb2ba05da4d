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
	"google.golang.org/protobuf/types/known/anypb"

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
//
// A layer keeps each resource in its packed form only: the deterministic
// bytes that were hashed for its version are the bytes delta clients get.
// The translated messages are garbage once the layer is built (in a
// 1,000-service mesh they are ~35 MB per scope, ten times their packed
// size); state-of-the-world streams, which go-control-plane serves from
// messages, get them decoded on first use.
type layer struct {
	versions map[string]string
	version  string // hash over names and versions: equal layers, equal version

	// wire holds every resource packed for delta responses.
	wire map[string]*discoverygrpc.Resource

	// protos are the messages decoded from wire, and withTTL the same for
	// SotW watches; only grpc-go's clients use SotW, so both are built on
	// first use.
	protosOnce sync.Once
	protos     map[string]types.Resource
	ttlOnce    sync.Once
	withTTL    map[string]types.ResourceWithTTL

	// diffs caches diff(from, this) by from's version: every proxy of a
	// scope that was in sync with the same layer gets the same, shared
	// answer.
	diffs sync.Map // version string -> *layerDiff
}

var emptyLayer = newLayer(nil, nil)

func newLayer(names []string, res []types.Resource) *layer {
	l := &layer{
		versions: make(map[string]string, len(res)),
		wire:     make(map[string]*discoverygrpc.Resource, len(res)),
	}
	for i, r := range res {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			continue // our own translated message: cannot happen
		}
		h := fnv.New64a()
		h.Write(b)
		v := hex.EncodeToString(h.Sum(nil))
		l.versions[names[i]] = v
		l.wire[names[i]] = &discoverygrpc.Resource{
			Name:     names[i],
			Version:  v,
			Resource: &anypb.Any{TypeUrl: anyPrefix + string(r.ProtoReflect().Descriptor().FullName()), Value: b},
		}
	}
	l.seal()
	return l
}

// anyPrefix is what anypb.New puts before a message's full name.
const anyPrefix = "type.googleapis.com/"

// resources returns the layer's messages, decoded once.
func (l *layer) resources() map[string]types.Resource {
	l.protosOnce.Do(func() {
		l.protos = make(map[string]types.Resource, len(l.wire))
		for n, w := range l.wire {
			m, err := w.GetResource().UnmarshalNew()
			if err != nil {
				continue // bytes we marshalled ourselves: cannot happen
			}
			l.protos[n] = m
		}
	})
	return l.protos
}

func (l *layer) resourcesWithTTL() map[string]types.ResourceWithTTL {
	l.ttlOnce.Do(func() {
		res := l.resources()
		l.withTTL = make(map[string]types.ResourceWithTTL, len(res))
		for n, r := range res {
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
	if len(local.wire) == 0 {
		return shared
	}
	if len(shared.wire) == 0 {
		return local
	}
	n := len(shared.wire) + len(local.wire)
	m := &layer{
		versions: make(map[string]string, n),
		wire:     make(map[string]*discoverygrpc.Resource, n),
	}
	for _, src := range []*layer{shared, local} {
		for name, w := range src.wire {
			m.versions[name] = w.GetVersion()
			m.wire[name] = w
		}
	}
	m.seal()
	// Decode each source once (the shared one for all its proxies), not
	// the merged layer per proxy.
	m.protosOnce.Do(func() {
		m.protos = make(map[string]types.Resource, n)
		for _, src := range []*layer{shared, local} {
			for name, r := range src.resources() {
				m.protos[name] = r
			}
		}
	})
	return m
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
	return s.layer(typeURL).resources()
}

// ConstructVersionMap is a no-op: versions are computed when layers are built.
func (s *snapshot) ConstructVersionMap() error { return nil }

func (s *snapshot) GetVersionMap(typeURL string) map[string]string { return s.layer(typeURL).versions }

package translate

import (
	"errors"
	"fmt"
	"hash/maphash"
	"regexp"
	"strconv"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/hostmatch"
	"github.com/trellismesh/trellis/internal/config/validate"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/registry"
)

// A sidecar refuses (NACKs) a whole CDS, EDS or LDS update when it cannot
// take one resource in it, so one object translated into something it
// refuses would freeze every service's clusters or listeners, and leave a
// freshly started sidecar never ready. As for routes (served.go), each
// cluster, load assignment and listener is put through the sidecar's own
// decoder before it joins the output, and what it refuses falls back to
// the nearest thing it takes:
//
//   - a cluster refused with its DestinationRule's traffic policy is built
//     without that policy (the service stays reachable, as in Istio when a
//     rule is bad), logged and reported by the analyzer (TRL0009);
//   - a service port's listener refused with a VirtualService's tcp or tls
//     chains gets the service's default chain instead, reported as routes
//     not served (TRL0008);
//   - anything still refused cannot come from user config: it is dropped
//     and logged as an error.
//
// Decoding costs about what the push's own encoding does, so verdicts are
// kept: per World for what does not depend on the proxy (clusters, load
// assignments and the HTTP listeners, keyed by name and DestinationRule),
// which every scope of a push shares; and across Worlds, by content, for
// load assignments and each proxy's own listeners and clusters, since
// every change makes a new World (lasting).

// PolicyProblem is a DestinationRule whose traffic policy the sidecar would
// refuse for a cluster it shapes. The cluster is served without the rule's
// policy, and the analyzer reports it (TRL0009).
type PolicyProblem struct {
	Object *config.Object // the DestinationRule
	Path   string         // field path inside Object, e.g. spec.trafficPolicy.connectionPool
	Detail string
}

func (p PolicyProblem) String() string {
	return p.Object.ID() + " " + p.Path + ": " + p.Detail
}

// PolicyNotServedCode is the analyzer code for DestinationRule policies
// that are not applied because the sidecar would refuse them
// (docs/analyzers.md).
const PolicyNotServedCode = "TRL0009"

// guardKind tells apart the resource types a verdict is kept for.
type guardKind uint8

const (
	guardCluster guardKind = iota
	guardCLA
	guardListener
)

// guardKey names one verdict: a resource built from World data alone,
// plus the DestinationRule that shaped it (nil for none).
type guardKey struct {
	kind guardKind
	name string
	dr   *config.Object
}

// verdict wraps a refusal (nil err: accepted) so that sync.Map can hold it.
type verdict struct{ err error }

// cachedRefusal is check's result, computed once per World for key.
func (w *World) cachedRefusal(key guardKey, check func() error) error {
	if v, ok := w.verdicts.Load(key); ok {
		return v.(verdict).err
	}
	err := check()
	w.verdicts.Store(key, verdict{err})
	return err
}

// decodeRefusal is the sidecar's decoder's error for m, or nil when it
// takes m.
func decodeRefusal(m proto.Message, decode func([]byte) error) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	return decode(b)
}

// guardDecoders is the sidecar's decoder per resource type; tests swap in
// a stricter one to see the fallbacks work for refusals that valid config
// cannot produce.
var guardDecoders = struct {
	cluster  func([]byte) error
	cla      func([]byte) error
	listener func([]byte) error
}{
	cluster:  func(b []byte) error { _, err := xdsresource.DecodeCluster(b); return err },
	cla:      func(b []byte) error { _, err := xdsresource.DecodeClusterLoadAssignment(b); return err },
	listener: func(b []byte) error { _, err := xdsresource.DecodeListener(b); return err },
}

func clusterRefusal(c *clusterv3.Cluster) error {
	return decodeRefusal(c, guardDecoders.cluster)
}

func claRefusal(cla *endpointv3.ClusterLoadAssignment) error {
	return decodeRefusal(cla, guardDecoders.cla)
}

func listenerRefusal(l *listenerv3.Listener) error {
	return decodeRefusal(l, guardDecoders.listener)
}

// lasting keeps the decoder's verdicts across Worlds, by resource kind,
// name and content hash: every change makes a new World, and re-checking
// all of a mesh's endpoints, or every proxy's own listeners, to find the
// few that changed would cost about as much again as the translation. It
// is emptied when full, which costs one round of decoding, not
// correctness.
var lasting struct {
	sync.Mutex
	m map[lastingKey]error
}

const maxLasting = 1 << 16

type lastingKey struct {
	kind guardKind
	name string
	sum  uint64
}

var lastingSeed = maphash.MakeSeed()

// lastingRefusal is check's verdict for key, computed again only for
// content not seen lately.
func lastingRefusal(key lastingKey, check func() error) error {
	lasting.Lock()
	err, seen := lasting.m[key]
	lasting.Unlock()
	if seen {
		return err
	}
	err = check()
	lasting.Lock()
	if lasting.m == nil || len(lasting.m) >= maxLasting {
		lasting.m = map[lastingKey]error{}
	}
	lasting.m[key] = err
	lasting.Unlock()
	return err
}

// cachedCLARefusal is claRefusal, decoded again only when the load
// assignment's content changed since it was last decoded. It is
// fingerprinted rather than encoded: encoding the endpoints' metadata is
// most of what a check would cost.
func cachedCLARefusal(cla *endpointv3.ClusterLoadAssignment) error {
	sum, ok := claFingerprint(cla)
	if !ok {
		return claRefusal(cla)
	}
	return lastingRefusal(lastingKey{guardCLA, cla.GetClusterName(), sum}, func() error { return claRefusal(cla) })
}

// proxyRefusal is decode's verdict on a resource built for one proxy
// (its listeners and inbound clusters), which no other scope shares:
// encoded every time, decoded only when the bytes changed.
func proxyRefusal(kind guardKind, name string, m proto.Message, decode func([]byte) error) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	return lastingRefusal(lastingKey{kind, name, maphash.Bytes(lastingSeed, b)}, func() error { return decode(b) })
}

// claFingerprintFields are the fields claFingerprint reads: every field
// loadAssignment sets must be among them (TestCLAFingerprintCoversOutput),
// or two load assignments differing only there would share a verdict.
var claFingerprintFields = []string{
	"envoy.config.endpoint.v3.ClusterLoadAssignment.cluster_name",
	"envoy.config.endpoint.v3.ClusterLoadAssignment.endpoints",
	"envoy.config.endpoint.v3.LocalityLbEndpoints.locality",
	"envoy.config.endpoint.v3.LocalityLbEndpoints.load_balancing_weight",
	"envoy.config.endpoint.v3.LocalityLbEndpoints.priority",
	"envoy.config.endpoint.v3.LocalityLbEndpoints.lb_endpoints",
	"envoy.config.core.v3.Locality.region",
	"envoy.config.core.v3.Locality.zone",
	"envoy.config.core.v3.Locality.sub_zone",
	"envoy.config.endpoint.v3.LbEndpoint.endpoint",
	"envoy.config.endpoint.v3.LbEndpoint.health_status",
	"envoy.config.endpoint.v3.LbEndpoint.load_balancing_weight",
	"envoy.config.endpoint.v3.LbEndpoint.metadata",
	"envoy.config.endpoint.v3.Endpoint.address",
	"envoy.config.core.v3.Address.socket_address",
	"envoy.config.core.v3.SocketAddress.protocol",
	"envoy.config.core.v3.SocketAddress.address",
	"envoy.config.core.v3.SocketAddress.port_value",
	"envoy.config.core.v3.Metadata.filter_metadata",
	"google.protobuf.Struct.fields",
	"google.protobuf.Value.string_value",
	"google.protobuf.UInt32Value.value",
}

// claFingerprint hashes what a load assignment holds (the fields in
// claFingerprintFields, with presence), without encoding it; ok is false
// for content it does not read, which is then always decoded.
func claFingerprint(cla *endpointv3.ClusterLoadAssignment) (sum uint64, ok bool) {
	// Each string is hashed alone (maphash.String is the runtime's own
	// string hash) and the words are chained, FNV style: several times
	// cheaper than streaming everything through a maphash.Hash.
	f := fingerprint(0)
	str := func(s string) { f.add(maphash.String(lastingSeed, s)) }
	wrapped := func(w *wrapperspb.UInt32Value) {
		if w == nil {
			f.add(1 << 40)
			return
		}
		f.add(uint64(w.GetValue()))
	}
	for _, loc := range cla.GetEndpoints() {
		f.add('L')
		if l := loc.GetLocality(); l != nil {
			f.add('+')
			str(l.GetRegion())
			str(l.GetZone())
			str(l.GetSubZone())
		}
		wrapped(loc.GetLoadBalancingWeight())
		f.add(uint64(loc.GetPriority()))
		for _, e := range loc.GetLbEndpoints() {
			f.add('E')
			if ep := e.GetEndpoint(); ep != nil {
				f.add('e')
				if a := ep.GetAddress(); a != nil {
					f.add('a')
					if sa := a.GetSocketAddress(); sa != nil {
						f.add('s')
						str(sa.GetAddress())
						f.add(uint64(sa.GetPortValue()) | uint64(sa.GetProtocol())<<32)
					}
				}
			}
			f.add(uint64(e.GetHealthStatus()))
			wrapped(e.GetLoadBalancingWeight())
			if md := e.GetMetadata(); md != nil {
				// Map order is random: entries are hashed alone and summed.
				var acc uint64
				for ns, st := range md.GetFilterMetadata() {
					nsSum := maphash.String(lastingSeed, ns)
					acc += nsSum
					for k, v := range st.GetFields() {
						sv, isString := v.GetKind().(*structpb.Value_StringValue)
						if !isString {
							return 0, false
						}
						entry := fingerprint(nsSum)
						entry.add(maphash.String(lastingSeed, k))
						entry.add(maphash.String(lastingSeed, sv.StringValue))
						acc += uint64(entry)
					}
				}
				f.add('M')
				f.add(acc)
			}
		}
	}
	return uint64(f), true
}

// fingerprint chains 64-bit words, FNV-1a style.
type fingerprint uint64

func (f *fingerprint) add(v uint64) {
	*f = (*f ^ fingerprint(v)) * 1099511628211
}

// servedClusters is outboundClusters for the DestinationRule o (nil for
// none) with what the sidecar would refuse replaced or dropped.
func (t *translation) servedClusters(svc *registry.Service, port registry.Port, o *config.Object) clusterSet {
	cs, problems := t.checkedClusters(svc, port, o)
	for _, p := range problems {
		t.w.reportPolicy(t, p)
	}
	return cs
}

// checkedClusters builds a service port's outbound clusters and load
// assignments with DestinationRule o, and rebuilds every cluster the
// sidecar refuses without o's policy, naming the policy that made it
// refuse. Proxyless gRPC clients have their own rules and are not checked.
func (t *translation) checkedClusters(svc *registry.Service, port registry.Port, o *config.Object) (clusterSet, []PolicyProblem) {
	var dr *networking.DestinationRule
	peakEWMA := false
	if o != nil {
		dr = o.Spec.(*networking.DestinationRule)
		peakEWMA = o.Annotations[validate.LoadBalancerAnnotation] == validate.PeakEWMA
	}
	cs := t.outboundClusters(svc, port, dr, peakEWMA)
	if t.proxy.Generator == GeneratorGRPC {
		return cs, nil
	}
	var problems []PolicyProblem
	var dropped map[string]bool
	kept := cs.clusters[:0]
	for i, c := range cs.clusters {
		err := t.w.cachedRefusal(guardKey{guardCluster, c.Name, o}, func() error { return clusterRefusal(c) })
		if err == nil {
			kept = append(kept, c)
			continue
		}
		// For a sidecar, outboundClusters gives the default cluster and
		// then one per subset, in order.
		subset := i - 1
		var labels map[string]string
		if subset >= 0 {
			labels = dr.GetSubsets()[subset].GetLabels()
		}
		bare := t.cluster(c.Name, svc, port, nil)
		bareErr := t.w.cachedRefusal(guardKey{guardCluster, c.Name, nil}, func() error { return clusterRefusal(bare) })
		if o == nil || bareErr != nil {
			t.log.Error("dropping a cluster the proxy would refuse; this is a Trellis bug, please report it", "cluster", c.Name, "service", svc.Hostname, "err", err)
			if dropped == nil {
				dropped = map[string]bool{}
			}
			dropped[c.Name] = true
			continue
		}
		problems = append(problems, PolicyProblem{Object: o, Path: t.policyPath(svc, port, dr, subset, peakEWMA, c.Name),
			Detail: fmt.Sprintf("the proxy would refuse the clusters of %s:%d with this setting (%v); they are served without the DestinationRule's policy: correct the setting", svc.Hostname, port.Port, err)})
		kept = append(kept, bare)
		if bare.GetType() == clusterv3.Cluster_EDS && c.GetType() != clusterv3.Cluster_EDS {
			// The policy had made it a cluster without endpoints of its
			// own (PASSTHROUGH); without it the cluster needs them.
			cs.endpoints = append(cs.endpoints, loadAssignment(c.Name, svc.Instances[port.Port], labels))
		}
	}
	cs.clusters = kept
	claKept := cs.endpoints[:0]
	for _, cla := range cs.endpoints {
		if dropped[cla.ClusterName] {
			continue
		}
		// Locality load balancing makes the assignment depend on the proxy's locality.
		err := t.w.cachedRefusal(guardKey{guardCLA, cla.ClusterName + t.w.localityScopeKey(t.proxy), o}, func() error { return cachedCLARefusal(cla) })
		if err != nil {
			// Endpoints come from the registry, which the validator
			// keeps to what the sidecar takes: without them the cluster
			// answers 503, and every other cluster keeps its endpoints.
			t.log.Error("dropping endpoints the proxy would refuse; this is a Trellis bug, please report it", "cluster", cla.ClusterName, "service", svc.Hostname, "err", err)
			continue
		}
		claKept = append(claKept, cla)
	}
	cs.endpoints = claKept
	return cs, problems
}

// policySections are the parts of a traffic policy Istio replaces whole
// (mergePolicy).
var policySections = []string{"loadBalancer", "connectionPool", "outlierDetection", "tls"}

// sectioned is what TrafficPolicy and its port-level settings share.
type sectioned interface {
	GetLoadBalancer() *networking.LoadBalancerSettings
	GetConnectionPool() *networking.ConnectionPoolSettings
	GetOutlierDetection() *networking.OutlierDetection
	GetTls() *networking.ClientTLSSettings
}

func sectionSet(p sectioned, section string) bool {
	switch section {
	case "loadBalancer":
		return p.GetLoadBalancer() != nil
	case "connectionPool":
		return p.GetConnectionPool() != nil
	case "outlierDetection":
		return p.GetOutlierDetection() != nil
	}
	return p.GetTls() != nil
}

// only is the section of p alone.
func only(p *networking.TrafficPolicy, section string) *networking.TrafficPolicy {
	switch section {
	case "loadBalancer":
		return &networking.TrafficPolicy{LoadBalancer: p.GetLoadBalancer()}
	case "connectionPool":
		return &networking.TrafficPolicy{ConnectionPool: p.GetConnectionPool()}
	case "outlierDetection":
		return &networking.TrafficPolicy{OutlierDetection: p.GetOutlierDetection()}
	}
	return &networking.TrafficPolicy{Tls: p.GetTls()}
}

// policyPath finds where in the DestinationRule the refused part of a
// cluster's policy was written: the section that alone makes the sidecar
// refuse it, at the place mergePolicy took it from (a port-level setting
// over its policy, a subset's over the top level), or the load-balancer
// annotation. It runs only for refused clusters.
func (t *translation) policyPath(svc *registry.Service, port registry.Port, dr *networking.DestinationRule, subset int, peakEWMA bool, name string) string {
	var subsetPolicy *networking.TrafficPolicy
	base := "spec.trafficPolicy"
	if subset >= 0 {
		subsetPolicy = dr.GetSubsets()[subset].GetTrafficPolicy()
		if subsetPolicy != nil {
			base = fmt.Sprintf("spec.subsets[%d].trafficPolicy", subset)
		}
	}
	eff := mergePolicy(dr.GetTrafficPolicy(), subsetPolicy, port.Port)
	for _, s := range policySections {
		if !sectionSet(eff, s) || clusterRefusal(t.cluster(name, svc, port, only(eff, s))) == nil {
			continue
		}
		path := ""
		from := func(at string, p *networking.TrafficPolicy) {
			if p == nil {
				return
			}
			if sectionSet(p, s) {
				path = at + "." + s
			}
			for j, pl := range p.GetPortLevelSettings() {
				if pl.GetPort().GetNumber() == port.Port && sectionSet(pl, s) {
					path = fmt.Sprintf("%s.portLevelSettings[%d].%s", at, j, s)
				}
			}
		}
		from("spec.trafficPolicy", dr.GetTrafficPolicy())
		if subset >= 0 {
			from(fmt.Sprintf("spec.subsets[%d].trafficPolicy", subset), subsetPolicy)
		}
		if path != "" {
			return path
		}
	}
	if peakEWMA {
		c := t.cluster(name, svc, port, eff)
		if clusterRefusal(c) == nil {
			return "metadata.annotations[" + validate.LoadBalancerAnnotation + "]"
		}
	}
	return base
}

// reportPolicy logs a DestinationRule policy that is not applied, once per
// World.
func (w *World) reportPolicy(t *translation, p PolicyProblem) {
	if _, dup := w.reported.LoadOrStore(p.String(), true); dup {
		return
	}
	t.log.Warn("DestinationRule policy not applied", "code", PolicyNotServedCode, "object", p.Object.ID(), "path", p.Path, "detail", p.Detail)
}

// servedTCPListener is a non-HTTP service port's listener, with the
// chains of the proxy's VirtualService for the service unless the sidecar
// would refuse them; nil when even the default chain is refused.
func (t *translation) servedTCPListener(svc *registry.Service, port registry.Port) *listenerv3.Listener {
	o, vs := t.w.virtualServiceFor(t.proxy, svc.Hostname)
	l, problems := t.checkedTCPListener(o, vs, svc, port)
	for _, p := range problems {
		t.w.report(t, p)
	}
	return l
}

// checkedTCPListener builds the listener of a non-HTTP service port with
// the tcp or tls routes of VirtualService o (nil for none). When the
// sidecar refuses it, o's chains are left out and the service's default
// chain serves the port; the problem names the route whose chain the
// decoder stopped at.
func (t *translation) checkedTCPListener(o *config.Object, vs *networking.VirtualService, svc *registry.Service, port registry.Port) (*listenerv3.Listener, []RouteProblem) {
	l := t.tcpListener(svc, port, t.l4Chains(o, vs, svc, port))
	err := listenerRefusal(l)
	if err == nil {
		return l, nil
	}
	var problems []RouteProblem
	if vs != nil {
		path, reason := l4Refusal(o, l, err)
		problems = append(problems, RouteProblem{Object: o, Path: path, Detail: fmt.Sprintf(
			"the proxy would refuse the listener for %s:%d with this route's filter chains (%s); none of the VirtualService's tcp and tls routes are served on that port, its connections go to the service",
			svc.Hostname, port.Port, reason)})
		l = t.tcpListener(svc, port, t.l4Chains(nil, nil, svc, port))
		err = listenerRefusal(l)
	}
	if err != nil {
		t.log.Error("dropping a listener the proxy would refuse; this is a Trellis bug, please report it", "listener", l.Name, "service", svc.Hostname, "err", err)
		return nil, problems
	}
	return l, problems
}

var chainIndex = regexp.MustCompile(`filter_chains\[(\d+)\]`)

// l4Refusal says where in VirtualService o the chain the decoder refused
// came from, and the decoder's reason with chain indexes replaced by the
// routes they came from (chain names are <name>.<namespace>.tcp[i] or
// .tls[i].match[j], with /<prefix> when split by subnet).
func l4Refusal(o *config.Object, l *listenerv3.Listener, err error) (path, reason string) {
	origin := func(i int) string {
		if i < 0 || i >= len(l.FilterChains) {
			return ""
		}
		route, ok := strings.CutPrefix(l.FilterChains[i].GetName(), o.Name+"."+o.Namespace+".")
		if !ok {
			return "the service's default chain"
		}
		route, _, _ = strings.Cut(route, "/")
		return "spec." + route
	}
	path = "spec.tcp"
	if len(o.Spec.(*networking.VirtualService).GetTls()) > 0 {
		path = "spec.tls"
	}
	var xe *xdsresource.Error
	if errors.As(err, &xe) {
		if m := chainIndex.FindStringSubmatch(xe.Path); m != nil {
			i, _ := strconv.Atoi(m[1])
			if p := origin(i); strings.HasPrefix(p, "spec.") {
				path = p
			}
		}
	}
	reason = chainIndex.ReplaceAllStringFunc(err.Error(), func(s string) string {
		i, _ := strconv.Atoi(chainIndex.FindStringSubmatch(s)[1])
		if p := origin(i); p != "" {
			return p
		}
		return s
	})
	return path, reason
}

// keepListener reports whether the sidecar takes a listener built without
// user objects (the HTTP outbound ports, virtualOutbound,
// virtualInbound); one it refuses is a Trellis bug, logged and left out so
// that the other listeners still reach the proxy. cache is set for
// listeners that depend on the World alone; the others are the proxy's
// own, checked again only when their bytes change.
func (t *translation) keepListener(l *listenerv3.Listener, cache bool) bool {
	var err error
	if cache {
		err = t.w.cachedRefusal(guardKey{guardListener, l.Name, nil}, func() error { return listenerRefusal(l) })
	} else {
		err = proxyRefusal(guardListener, l.Name, l, guardDecoders.listener)
	}
	if err != nil {
		t.log.Error("dropping a listener the proxy would refuse; this is a Trellis bug, please report it", "listener", l.Name, "err", err)
		return false
	}
	return true
}

// keepCluster is keepListener for the clusters built without user
// objects (PassthroughCluster, BlackHoleCluster, inbound clusters).
func (t *translation) keepCluster(c *clusterv3.Cluster, cache bool) bool {
	var err error
	if cache {
		err = t.w.cachedRefusal(guardKey{guardCluster, c.Name, nil}, func() error { return clusterRefusal(c) })
	} else {
		err = proxyRefusal(guardCluster, c.Name, c, guardDecoders.cluster)
	}
	if err != nil {
		t.log.Error("dropping a cluster the proxy would refuse; this is a Trellis bug, please report it", "cluster", c.Name, "err", err)
		return false
	}
	return true
}

// PolicyProblems lists the DestinationRules of a snapshot whose traffic
// policy the sidecar would refuse, for every port of every service the
// rule's host covers, as seen from the rule's own namespace.
func PolicyProblems(w *World) []PolicyProblem {
	var out []PolicyProblem
	seen := map[string]bool{}
	for _, o := range w.dr {
		dr := o.Spec.(*networking.DestinationRule)
		host := w.Reg.FQDN(dr.GetHost(), o.Namespace)
		t := &translation{w: w, proxy: &Proxy{Namespace: o.Namespace}, log: newLogger(nil)}
		for _, svc := range w.Reg.Services() {
			if !hostmatch.Within(svc.Hostname, host) {
				continue
			}
			for _, port := range svc.Ports {
				_, problems := t.checkedClusters(svc, port, o)
				for _, p := range problems {
					if !seen[p.String()] {
						seen[p.String()] = true
						out = append(out, p)
					}
				}
			}
		}
	}
	return out
}

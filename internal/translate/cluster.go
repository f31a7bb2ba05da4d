package translate

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/registry"
)

// ClusterName is Istio's outbound cluster name: outbound|port|subset|host.
func ClusterName(direction string, port uint32, subset, hostname string) string {
	return fmt.Sprintf("%s|%d|%s|%s", direction, port, subset, hostname)
}

// defaultConnectTimeout is Istio's default for MeshConfig.connectTimeout.
const defaultConnectTimeout = 10 * time.Second

// connectTimeout is every cluster's connect timeout unless a
// DestinationRule's connectionPool.tcp.connectTimeout overrides it:
// MeshConfig.connectTimeout, Istio's 10 s when unset or 0.
func (t *translation) connectTimeout() *durationpb.Duration {
	if ct := t.w.Mesh.GetConnectTimeout(); ct.AsDuration() > 0 {
		return durationpb.New(ct.AsDuration())
	}
	return durationpb.New(defaultConnectTimeout)
}

// clusterSet builds the outbound clusters of one service port: the
// default cluster plus one per DestinationRule subset, each with its
// ClusterLoadAssignment. peakEWMA (the DestinationRule's
// trellis.io/load-balancer: PEAK_EWMA) holds for the subsets too.
type clusterSet struct {
	clusters  []*clusterv3.Cluster
	endpoints []*endpointv3.ClusterLoadAssignment
}

func (t *translation) outboundClusters(svc *registry.Service, port registry.Port, dr *networking.DestinationRule, peakEWMA bool) clusterSet {
	var out clusterSet
	build := func(subset string, labels map[string]string, policy *networking.TrafficPolicy) {
		name := ClusterName("outbound", port.Port, subset, svc.Hostname)
		eff := mergePolicy(dr.GetTrafficPolicy(), policy, port.Port)
		c := t.cluster(name, svc, port, eff)
		if c == nil {
			return
		}
		if peakEWMA {
			t.applyPeakEWMA(c)
		}
		out.clusters = append(out.clusters, c)
		t.applyLocalityLB(c, c.LoadAssignment, eff, svc.Instances[port.Port], nil) // locality.go
		if c.GetType() == clusterv3.Cluster_EDS {
			cla := loadAssignment(name, svc.Instances[port.Port], labels)
			t.applyLocalityLB(nil, cla, eff, svc.Instances[port.Port], labels)
			out.endpoints = append(out.endpoints, cla)
		}
	}
	build("", nil, nil)
	for _, ss := range dr.GetSubsets() {
		build(ss.GetName(), ss.GetLabels(), ss.GetTrafficPolicy())
	}
	return out
}

// mergePolicy applies Istio's precedence: subset policy over the
// DestinationRule's top-level policy, and a port-level setting for this
// port over both of the policy it sits in. Istio replaces whole sections
// (loadBalancer, connectionPool, ...) rather than merging fields, and a
// port-level setting replaces all four: the DestinationRule reference says
// sections it omits take their defaults, not the policy's.
func mergePolicy(top, subset *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	eff := &networking.TrafficPolicy{}
	for _, p := range []*networking.TrafficPolicy{top, subset} {
		if p == nil {
			continue
		}
		if p.GetLoadBalancer() != nil {
			eff.LoadBalancer = p.GetLoadBalancer()
		}
		if p.GetConnectionPool() != nil {
			eff.ConnectionPool = p.GetConnectionPool()
		}
		if p.GetOutlierDetection() != nil {
			eff.OutlierDetection = p.GetOutlierDetection()
		}
		if p.GetTls() != nil {
			eff.Tls = p.GetTls()
		}
		if p.GetRetryBudget() != nil {
			eff.RetryBudget = p.GetRetryBudget()
		}
		for _, pl := range p.GetPortLevelSettings() {
			if pl.GetPort().GetNumber() != port {
				continue
			}
			eff.LoadBalancer = pl.GetLoadBalancer()
			eff.ConnectionPool = pl.GetConnectionPool()
			eff.OutlierDetection = pl.GetOutlierDetection()
			eff.Tls = pl.GetTls()
			break
		}
	}
	return eff
}

func (t *translation) cluster(name string, svc *registry.Service, port registry.Port, policy *networking.TrafficPolicy) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: t.connectTimeout(),
	}
	switch svc.Resolution {
	case registry.ResolutionStatic:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		}
	case registry.ResolutionDNS:
		if t.proxy.Generator == GeneratorGRPC {
			t.log.Info("dropping DNS-resolved service for proxyless gRPC: grpc-go resolves only EDS clusters here", "cluster", name)
			return nil
		}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.LoadAssignment = loadAssignment(name, svc.Instances[port.Port], nil)
	case registry.ResolutionNone:
		if t.proxy.Generator == GeneratorGRPC {
			t.log.Info("dropping passthrough service for proxyless gRPC", "cluster", name)
			return nil
		}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		return c
	}
	t.applyOutlierDetection(c, policy.GetOutlierDetection()) // outlier.go
	t.applyLoadBalancer(c, policy.GetLoadBalancer())
	t.applyWarmup(c, policy.GetLoadBalancer()) // locality.go
	t.applyConnectionPool(c, svc, port, policy.GetConnectionPool())
	t.applyRetryBudget(c, policy.GetRetryBudget()) // retry.go
	t.applyTLS(c, svc, port, policy.GetTls())
	return c
}

// applyLoadBalancer maps DestinationRule loadBalancer onto the cluster.
// Istio's default is LEAST_REQUEST. grpc-go supports ROUND_ROBIN,
// LEAST_REQUEST and RING_HASH only, so RANDOM and MAGLEV are mapped to the
// nearest it has, and the change is logged.
func (t *translation) applyLoadBalancer(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings) {
	c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	if lb == nil {
		return
	}
	switch {
	case lb.GetConsistentHash() != nil:
		ch := lb.GetConsistentHash()
		if ch.GetMaglev() != nil {
			if t.proxy.Generator == GeneratorGRPC {
				t.log.Info("grpc-go has no MAGLEV load balancer; using RING_HASH", "cluster", c.Name)
				c.LbPolicy = clusterv3.Cluster_RING_HASH
				return
			}
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			if size := ch.GetMaglev().GetTableSize(); size > 0 {
				c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(size)}}
			}
			return
		}
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		min := ch.GetRingHash().GetMinimumRingSize()
		if min == 0 {
			//lint:ignore SA1019 Istio still honours the deprecated top-level field.
			min = ch.GetMinimumRingSize()
		}
		if min > 0 {
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(min)}}
		}
	case lb.GetSimple() == networking.LoadBalancerSettings_ROUND_ROBIN:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case lb.GetSimple() == networking.LoadBalancerSettings_RANDOM:
		if t.proxy.Generator == GeneratorGRPC {
			t.log.Info("grpc-go has no RANDOM load balancer; using ROUND_ROBIN", "cluster", c.Name)
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
			return
		}
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case lb.GetSimple() == networking.LoadBalancerSettings_PASSTHROUGH:
		if t.proxy.Generator == GeneratorGRPC {
			t.log.Info("grpc-go has no PASSTHROUGH load balancing; using ROUND_ROBIN", "cluster", c.Name)
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
			return
		}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.EdsClusterConfig = nil
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	}
}

// Cluster filter_metadata that trellis-proxy reads: lb names a load
// balancer Envoy's lb_policy has no value for.
const (
	ClusterLBKey = "lb"
	LBPeakEWMA   = "PEAK_EWMA"
)

// applyPeakEWMA marks a LEAST_REQUEST cluster for trellis-proxy's
// peak-EWMA balancer (latency × (active+1), as Linkerd's). Validation
// allows the annotation only beside LEAST_REQUEST, so other policies are
// left alone here; grpc-go has no such balancer and keeps least-request.
func (t *translation) applyPeakEWMA(c *clusterv3.Cluster) {
	if c.LbPolicy != clusterv3.Cluster_LEAST_REQUEST || t.proxy.Generator == GeneratorGRPC {
		return
	}
	c.Metadata = stringMetadata(map[string]string{ClusterLBKey: LBPeakEWMA})
}

// applyConnectionPool maps connectionPool limits to circuit breakers and
// HTTP protocol options, and decides the upstream HTTP version: HTTP/2 for
// HTTP2/gRPC ports, and for HTTP/1.1 ports when h2UpgradePolicy is UPGRADE
// (Istio's default is DO_NOT_UPGRADE).
func (t *translation) applyConnectionPool(c *clusterv3.Cluster, svc *registry.Service, port registry.Port, cp *networking.ConnectionPoolSettings) {
	if ct := cp.GetTcp().GetConnectTimeout(); ct != nil {
		c.ConnectTimeout = ct
	}
	th := &clusterv3.CircuitBreakers_Thresholds{}
	set := false
	if v := cp.GetTcp().GetMaxConnections(); v > 0 {
		th.MaxConnections, set = wrapperspb.UInt32(uint32(v)), true
	}
	if v := cp.GetHttp().GetHttp1MaxPendingRequests(); v > 0 {
		th.MaxPendingRequests, set = wrapperspb.UInt32(uint32(v)), true
	}
	if v := cp.GetHttp().GetHttp2MaxRequests(); v > 0 {
		th.MaxRequests, set = wrapperspb.UInt32(uint32(v)), true
	}
	if v := cp.GetHttp().GetMaxRetries(); v > 0 {
		th.MaxRetries, set = wrapperspb.UInt32(uint32(v)), true
	}
	if set {
		if t.proxy.Generator == GeneratorGRPC {
			// grpc-go honours only max_requests.
			if th.MaxRequests != nil {
				c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRequests: th.MaxRequests}}}
			}
		} else {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
		}
	}
	common := httpCommonOptions(cp) // connpool.go
	h2 := port.Protocol == registry.HTTP2 || port.Protocol == registry.GRPC
	if port.Protocol == registry.HTTP && cp.GetHttp().GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE {
		h2 = true
	}
	var h2opts *corev3.Http2ProtocolOptions
	if h2 {
		h2opts = http2Options(cp)
	}
	proto := port.Protocol
	if cp.GetHttp().GetUseClientProtocol() {
		// Istio: the downstream's protocol, in place of any upgrade or
		// the port's HTTP/2 (and with it their HTTP/2 options).
		h2opts, proto = nil, registry.Unsupported
	}
	t.setUpstreamProtocol(c, proto, h2opts, common)
	t.applyTCPKeepalive(c, cp.GetTcp())
}

// setUpstreamProtocol sets the HTTP version a cluster speaks upstream, as
// Istio does: HTTP/2 when h2 options are given (HTTP2 and gRPC ports, or
// an upgrade), the downstream's own protocol for ports whose protocol was
// sniffed, and otherwise HTTP/1.1, Envoy's default, which needs no
// options unless common ones are set.
func (t *translation) setUpstreamProtocol(c *clusterv3.Cluster, proto registry.Protocol, h2 *corev3.Http2ProtocolOptions, common *corev3.HttpProtocolOptions) {
	if t.proxy.Generator == GeneratorGRPC {
		return // grpc-go speaks HTTP/2 itself and ignores protocol options
	}
	opts := &upstreamhttp.HttpProtocolOptions{CommonHttpProtocolOptions: common}
	switch {
	case h2 != nil:
		opts.UpstreamProtocolOptions = &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: h2},
			},
		}
	case proto == registry.Unsupported:
		opts.UpstreamProtocolOptions = &upstreamhttp.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &upstreamhttp.HttpProtocolOptions_UseDownstreamHttpConfig{},
		}
	case common == nil:
		return
	default:
		opts.UpstreamProtocolOptions = &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
			},
		}
	}
	a, err := anypb.New(opts)
	if err != nil {
		t.log.Error("cannot encode HTTP protocol options", "cluster", c.Name, "err", err)
		return
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsName: a}
}

const httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// loadAssignment lists a cluster's ready endpoints, grouped by locality.
// grpc-go ignores localities without a weight, so every locality carries
// the sum of its endpoints' weights.
func loadAssignment(name string, instances []*registry.Instance, subset map[string]string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	byLocality := map[string]*endpointv3.LocalityLbEndpoints{}
	var order []string
	for _, in := range instances {
		if !in.Ready || !labelsMatch(subset, in.Labels) {
			continue
		}
		loc, ok := byLocality[in.Locality]
		if !ok {
			loc = &endpointv3.LocalityLbEndpoints{Locality: parseLocality(in.Locality), LoadBalancingWeight: wrapperspb.UInt32(0)}
			byLocality[in.Locality] = loc
			order = append(order, in.Locality)
		}
		weight := in.Weight
		if weight == 0 {
			weight = 1
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(in.Address, in.Port),
			}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(weight),
			Metadata:            endpointMetadata(in),
		})
		loc.LoadBalancingWeight = wrapperspb.UInt32(loc.LoadBalancingWeight.GetValue() + weight)
	}
	for _, l := range order {
		cla.Endpoints = append(cla.Endpoints, byLocality[l])
	}
	return cla
}

func parseLocality(s string) *corev3.Locality {
	if s == "" {
		return &corev3.Locality{}
	}
	parts := strings.SplitN(s, "/", 3)
	l := &corev3.Locality{Region: parts[0]}
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.SubZone = parts[2]
	}
	return l
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// newLogger gives translation a logger that never fails on nil.
func newLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

package translate

import (
	"fmt"
	"log/slog"
	"sort"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/registry"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
)

// Resources is everything one proxy receives, each list sorted by name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// Well-known names shared with the proxy.
const (
	VirtualOutbound    = "virtualOutbound"
	VirtualInbound     = "virtualInbound"
	PassthroughCluster = "PassthroughCluster"
	BlackHoleCluster   = "BlackHoleCluster"
	OutboundPort       = 15001
	InboundPort        = 15006
	// MetadataNamespace is the filter_metadata key under which endpoint
	// identity (workload, namespace, service account) and tlsMode travel.
	MetadataNamespace = "trellis"
	// TLSModeLabel is the label Istio's injector puts on pods that run a
	// sidecar; endpoints whose workload has it set to TLSModeIstio carry
	// tlsMode: istio, so a proxy reaches them through their tunnel port.
	TLSModeLabel = "security.istio.io/tlsMode"
	TLSModeIstio = "istio"
	// TransportSocketMatchNamespace is Envoy's filter_metadata key that a
	// cluster's transport_socket_matches select on; istiod puts
	// {tlsMode: istio} there and so does Trellis.
	TransportSocketMatchNamespace = "envoy.transport_socket_match"
)

type translation struct {
	w     *World
	proxy *Proxy
	log   *slog.Logger
	res   Resources
}

// ForProxy translates the world for one proxy: Shared and Local together.
// log receives notes about settings a client cannot honour (e.g. RANDOM
// for grpc-go).
func ForProxy(w *World, p *Proxy, log *slog.Logger) *Resources {
	r := Shared(w, p, log)
	l := Local(w, p, log)
	r.Listeners = append(r.Listeners, l.Listeners...)
	r.Routes = append(r.Routes, l.Routes...)
	r.Clusters = append(r.Clusters, l.Clusters...)
	r.Endpoints = append(r.Endpoints, l.Endpoints...)
	r.sort()
	return r
}

// Shared translates the part of a proxy's resources that every proxy with
// the same World.ScopeKey receives (outbound routes, clusters, endpoints),
// so the control plane translates it once per scope, not once per proxy.
func Shared(w *World, p *Proxy, log *slog.Logger) *Resources {
	t := &translation{w: w, proxy: p, log: newLogger(log).With("scope", w.ScopeKey(p))}
	if p.Generator == GeneratorGRPC {
		t.grpc()
	} else {
		t.sidecar()
	}
	t.applyTelemetry(true) // telemetry.go
	t.res.sort()
	return &t.res
}

// Local translates what is specific to one proxy: its own listeners
// (bound to its pod IP in explicit mode) and its inbound side.
func Local(w *World, p *Proxy, log *slog.Logger) *Resources {
	t := &translation{w: w, proxy: p, log: newLogger(log).With("proxy", p.ID)}
	if p.Generator != GeneratorGRPC {
		if l := t.virtualOutbound(); t.keepListener(l, false) {
			t.res.Listeners = append(t.res.Listeners, l)
		}
		t.inbound()
	} else {
		t.grpcInbound() // xDS-enabled grpc-go servers (grpctls.go)
	}
	t.applyTelemetry(false) // telemetry.go
	t.res.sort()
	return &t.res
}

func (r *Resources) sort() {
	sort.Slice(r.Listeners, func(i, j int) bool { return r.Listeners[i].Name < r.Listeners[j].Name })
	sort.Slice(r.Routes, func(i, j int) bool { return r.Routes[i].Name < r.Routes[j].Name })
	sort.Slice(r.Clusters, func(i, j int) bool { return r.Clusters[i].Name < r.Clusters[j].Name })
	sort.Slice(r.Endpoints, func(i, j int) bool { return r.Endpoints[i].ClusterName < r.Endpoints[j].ClusterName })
}

func (t *translation) addClusters(svc *registry.Service, port registry.Port) {
	cs := t.servedClusters(svc, port, t.w.destinationRuleObject(t.proxy, svc.Hostname, svc.Namespace))
	t.res.Clusters = append(t.res.Clusters, cs.clusters...)
	t.res.Endpoints = append(t.res.Endpoints, cs.endpoints...)
}

// grpc builds what proxyless grpc-go needs: for every reachable HTTP-ish
// service port, api_listeners named as a client may write the target
// (greeter:7070 from its own namespace, greeter.ns:7070, ...,
// greeter.ns.svc.cluster.local:7070), one route configuration per service
// port, and EDS clusters.
func (t *translation) grpc() {
	eg := t.w.egress(t.proxy)
	for _, svc := range eg.Services() {
		for _, port := range svc.Ports {
			if _, ok := eg.Port(svc, port); !ok {
				continue
			}
			if !port.Protocol.IsHTTP() && port.Protocol != registry.Unsupported {
				continue
			}
			routeName := svc.Hostname + ":" + strconv.FormatUint(uint64(port.Port), 10)
			domains := domainsFor(svc, port.Port, t.proxy.Namespace, false)
			for _, d := range domains {
				t.res.Listeners = append(t.res.Listeners, apiListener(d, routeName))
			}
			rc := &routev3.RouteConfiguration{Name: routeName, VirtualHosts: []*routev3.VirtualHost{t.virtualHost(svc, port.Port, append(domains, "*"))}}
			t.res.Routes = append(t.res.Routes, rc)
			t.addGRPCClusters(svc, port) // with their transport security (grpctls.go)
		}
	}
}

func apiListener(name, routeName string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: routeName}},
		HttpFilters:    []*hcmv3.HttpFilter{routerFilter()},
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)}}
}

// sidecar builds Istio-shaped sidecar resources: per-port outbound route
// configurations named by port ("9080") with a virtual host per service,
// per-port outbound listeners (bind_to_port false) behind virtualOutbound
// on 15001, TCP listeners for non-HTTP ports, and virtualInbound on 15006
// with one filter chain per local workload port.
func (t *translation) sidecar() {
	routesByPort := map[uint32]*routev3.RouteConfiguration{}
	eg := t.w.egress(t.proxy)
	for _, svc := range eg.Services() {
		for _, port := range svc.Ports {
			listener, ok := eg.Port(svc, port)
			if !ok {
				continue
			}
			// The cluster speaks the service port's protocol; the
			// listener the Sidecar egress port's, as in Istio.
			t.addClusters(svc, port)
			port.Protocol = listener
			if port.Protocol.IsHTTP() || port.Protocol == registry.Unsupported {
				rc, ok := routesByPort[port.Port]
				if !ok {
					rc = &routev3.RouteConfiguration{Name: strconv.FormatUint(uint64(port.Port), 10), ValidateClusters: wrapperspb.Bool(false)}
					routesByPort[port.Port] = rc
				}
				rc.VirtualHosts = append(rc.VirtualHosts, t.virtualHost(svc, port.Port, domainsFor(svc, port.Port, t.proxy.Namespace, true)))
				continue
			}
			if l := t.servedTCPListener(svc, port); l != nil {
				t.res.Listeners = append(t.res.Listeners, l)
			}
		}
	}
	ports := make([]uint32, 0, len(routesByPort))
	for p := range routesByPort {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, p := range ports {
		rc := routesByPort[p]
		rc.VirtualHosts = append(rc.VirtualHosts, t.fallbackHost())
		t.res.Routes = append(t.res.Routes, rc)
		if l := t.httpOutboundListener(p); t.keepListener(l, true) {
			t.res.Listeners = append(t.res.Listeners, l)
		}
	}
	for _, c := range []*clusterv3.Cluster{
		{Name: PassthroughCluster, ConnectTimeout: t.connectTimeout(),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}, LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED},
		{Name: BlackHoleCluster, ConnectTimeout: t.connectTimeout(),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}},
	} {
		if c.Name == PassthroughCluster {
			t.applyTCPKeepalive(c, nil) // MeshConfig's, as istiod's passthrough
		}
		if t.keepCluster(c, true) {
			t.res.Clusters = append(t.res.Clusters, c)
		}
	}
}

// fallbackHost handles hosts no service claims: passed through under
// ALLOW_ANY (Istio's default), refused with 502 under REGISTRY_ONLY.
func (t *translation) fallbackHost() *routev3.VirtualHost {
	vh := &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"}}
	if t.registryOnly() {
		vh.Name = "block_all"
		vh.Routes = []*routev3.Route{{Name: "block_all", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}}}}
		return vh
	}
	vh.Routes = []*routev3.Route{{Name: "allow_any", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: PassthroughCluster}, Timeout: zeroDuration()}}}}
	return vh
}

// registryOnly is the proxy's outbound traffic policy: its Sidecar's when
// that sets one, else MeshConfig's, as Istio decides it.
func (t *translation) registryOnly() bool {
	if sc := registry.SidecarFor(t.w.sidecars, t.proxy.Namespace, t.proxy.Labels, t.w.RootNamespace()); sc != nil {
		if otp := sc.Spec.(*networking.Sidecar).GetOutboundTrafficPolicy(); otp != nil {
			return otp.GetMode() == networking.OutboundTrafficPolicy_REGISTRY_ONLY
		}
	}
	return t.w.Mesh.GetOutboundTrafficPolicy().GetMode() == meshv1alpha1.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY
}

func (t *translation) listenAddress() string {
	if t.proxy.InterceptionMode == "NONE" && t.proxy.IP != "" {
		return t.proxy.IP
	}
	return "0.0.0.0"
}

// virtualOutbound takes what no port claims: passed through, or under
// REGISTRY_ONLY refused (BlackHoleCluster), as in Istio. The proxy reads
// the policy from here, so it holds for a proxy without HTTP routes too.
func (t *translation) virtualOutbound() *listenerv3.Listener {
	fallback := PassthroughCluster
	if t.registryOnly() {
		fallback = BlackHoleCluster
	}
	return &listenerv3.Listener{
		Name:           VirtualOutbound,
		Address:        socketAddress(t.listenAddress(), OutboundPort),
		UseOriginalDst: wrapperspb.Bool(t.proxy.InterceptionMode != "NONE"),
		FilterChains: []*listenerv3.FilterChain{{
			Name:    fallback,
			Filters: []*listenerv3.Filter{tcpProxyFilter(fallback, fallback)},
		}},
	}
}

func (t *translation) httpOutboundListener(port uint32) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "outbound_0.0.0.0_" + strconv.FormatUint(uint64(port), 10),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: strconv.FormatUint(uint64(port), 10)}},
		HttpFilters:    []*hcmv3.HttpFilter{corsFilter(), faultFilter(), routerFilter()}, // cors.go, fault.go
	}
	t.normalizePaths(hcm) // pathnorm.go
	return &listenerv3.Listener{
		Name:             fmt.Sprintf("0.0.0.0_%d", port),
		Address:          socketAddress("0.0.0.0", port),
		BindToPort:       wrapperspb.Bool(false),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}}}}},
	}
}

// tcpListener serves a non-HTTP service port: on its VIP when it has one
// (several TCP services may share a port number), otherwise on the
// hostname-qualified name the explicit-mode proxy looks up for CONNECT.
// Its filter chains carry the port's tcp or tls routes (l4Chains).
func (t *translation) tcpListener(svc *registry.Service, port registry.Port, chains []*listenerv3.FilterChain) *listenerv3.Listener {
	addr := "0.0.0.0"
	name := svc.Hostname + "_" + strconv.FormatUint(uint64(port.Port), 10)
	if len(svc.Addresses) > 0 {
		addr = svc.Addresses[0]
		name = addr + "_" + strconv.FormatUint(uint64(port.Port), 10)
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(addr, port.Port),
		BindToPort:       wrapperspb.Bool(false),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     chains,
		Metadata:         stringMetadata(map[string]string{"host": svc.Hostname}),
	}
}

// inbound builds virtualInbound for the workload behind this proxy: one
// filter chain per target port of every service that selects it, routing
// to the app on the pod IP.
func (t *translation) inbound() {
	seen := map[uint32]bool{}
	var targets []inboundTarget
	if t.proxy.IP != "" {
		for _, tg := range t.w.inbound[t.proxy.IP] {
			if !seen[tg.port] {
				seen[tg.port] = true
				targets = append(targets, tg)
			}
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].port < targets[j].port })
	l := &listenerv3.Listener{
		Name:             VirtualInbound,
		Address:          socketAddress(t.listenAddress(), InboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
	}
	for _, tg := range targets {
		name := ClusterName("inbound", tg.port, "", "")
		ic := &clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       t.connectTimeout(),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(t.proxy.IP, tg.port)}}}},
			}}},
		}
		// The app gets the protocol its port declares, whatever the peer
		// sidecar spoke: an h2UpgradePolicy upgrade is between sidecars.
		if tg.protocol.IsHTTP() || tg.protocol == registry.Unsupported {
			var h2 *corev3.Http2ProtocolOptions
			if tg.protocol == registry.HTTP2 || tg.protocol == registry.GRPC {
				h2 = &corev3.Http2ProtocolOptions{}
			}
			t.setUpstreamProtocol(ic, tg.protocol, h2, nil)
		}
		if t.keepCluster(ic, false) {
			t.res.Clusters = append(t.res.Clusters, ic)
		}
		fc := &listenerv3.FilterChain{
			Name:             name,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(tg.port)},
		}
		if tg.protocol.IsHTTP() || tg.protocol == registry.Unsupported {
			hcm := &hcmv3.HttpConnectionManager{
				StatPrefix: name,
				RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
					Name: name,
					VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|" + strconv.FormatUint(uint64(tg.port), 10), Domains: []string{"*"},
						Routes: []*routev3.Route{{Name: "default", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
							Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}, Timeout: zeroDuration()}}}}}},
				}},
				HttpFilters: append(t.httpAuthzFilters(), routerFilter()),
			}
			hcm.HttpFilters = append(t.jwtFilters(), hcm.HttpFilters...) // RequestAuthentication, first (jwt.go)
			t.normalizePaths(hcm)                                        // pathnorm.go
			fc.Filters = []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}}}
		} else {
			fc.Filters = append(t.tcpAuthzFilters(name), tcpProxyFilter(name, name))
		}
		l.FilterChains = append(l.FilterChains, fc)
	}
	l.FilterChains = append(l.FilterChains, t.authzPassthroughChains()...)
	t.applyPeerAuthn(l)
	if t.keepListener(l, false) {
		t.res.Listeners = append(t.res.Listeners, l)
	}
}

func tcpProxyFilter(statPrefix, cluster string) *listenerv3.Filter {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}}
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

// mustAny packs a message we built ourselves; failure is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("translate: cannot pack %T: %v", m, err))
	}
	return a
}

func zeroDuration() *durationpb.Duration { return durationpb.New(0) }

func stringMetadata(kv map[string]string) *corev3.Metadata {
	fields := map[string]*structpb.Value{}
	for k, v := range kv {
		fields[k] = structpb.NewStringValue(v)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataNamespace: {Fields: fields}}}
}

// endpointMetadata carries the workload identity a proxy needs to check the
// peer's certificate once mTLS lands (and for telemetry labels), and, as
// istiod does, tlsMode: istio for workloads labelled as running a sidecar:
// in the trellis namespace for our proxy, and in Envoy's
// envoy.transport_socket_match namespace for an Envoy's socket matches.
func endpointMetadata(in *registry.Instance) *corev3.Metadata {
	kv := map[string]string{}
	if in.Workload != "" {
		kv["workload"] = in.Workload
	}
	if in.Namespace != "" {
		kv["namespace"] = in.Namespace
	}
	if in.ServiceAccount != "" {
		kv["serviceAccount"] = in.ServiceAccount
	}
	if in.WorkloadName != "" {
		kv["peer"] = peerMetadata(in)
	}
	tunnel := in.Labels[TLSModeLabel] == TLSModeIstio
	if tunnel {
		kv["tlsMode"] = TLSModeIstio
	}
	if in.Proxyless {
		// No tunnel port: sidecars reach it with direct mTLS (see
		// registry.IsProxyless).
		kv["proxyless"] = "true"
	}
	if len(kv) == 0 {
		return nil
	}
	md := stringMetadata(kv)
	if tunnel {
		md.FilterMetadata[TransportSocketMatchNamespace] = &structpb.Struct{Fields: map[string]*structpb.Value{
			"tlsMode": structpb.NewStringValue(TLSModeIstio),
		}}
	}
	return md
}

// peerMetadata is what a client's sidecar labels its metrics with about
// the endpoint it called (destination_workload, _app, _version,
// _canonical_service, ...), in one string that the workload's endpoints
// share.
func peerMetadata(in *registry.Instance) string {
	return metrics.WorkloadOf(in.WorkloadName, in.Namespace, in.Labels).EndpointMetadata()
}

// CanonicalService is Istio's canonical service of a workload with those
// labels (metrics.WorkloadOf).
func CanonicalService(labels map[string]string, workload string) string {
	return metrics.WorkloadOf(workload, "", labels).CanonicalService
}

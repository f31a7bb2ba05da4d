package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// The parts of a DestinationRule's connectionPool that shape connections
// rather than limit them, as istiod's applyConnectionPool and
// applyTCPKeepalive write them (cluster_traffic_policy.go, cluster.go) and
// its TCP listeners carry them (networkfilter.go).

// httpCommonOptions are a cluster's common HTTP protocol options: Istio
// takes the HTTP idle timeout from http.idleTimeout, else from
// tcp.idleTimeout, and the connection's age limit from
// tcp.maxConnectionDuration. nil when none is set.
func httpCommonOptions(cp *networking.ConnectionPoolSettings) *corev3.HttpProtocolOptions {
	var common *corev3.HttpProtocolOptions
	get := func() *corev3.HttpProtocolOptions {
		if common == nil {
			common = &corev3.HttpProtocolOptions{}
		}
		return common
	}
	if v := cp.GetHttp().GetMaxRequestsPerConnection(); v > 0 {
		get().MaxRequestsPerConnection = wrapperspb.UInt32(uint32(v))
	}
	idle := cp.GetHttp().GetIdleTimeout()
	if idle == nil {
		idle = cp.GetTcp().GetIdleTimeout()
	}
	if idle != nil {
		get().IdleTimeout = idle
	}
	if d := cp.GetTcp().GetMaxConnectionDuration(); d != nil {
		get().MaxConnectionDuration = d
	}
	return common
}

// http2Options are the HTTP/2 options of a cluster that speaks HTTP/2:
// http.maxConcurrentStreams and http.http2KeepAlive, as Istio sets them.
func http2Options(cp *networking.ConnectionPoolSettings) *corev3.Http2ProtocolOptions {
	h2 := &corev3.Http2ProtocolOptions{}
	if v := cp.GetHttp().GetMaxConcurrentStreams(); v > 0 {
		h2.MaxConcurrentStreams = wrapperspb.UInt32(uint32(v))
	}
	if ka := cp.GetHttp().GetHttp2KeepAlive(); ka != nil {
		h2.ConnectionKeepalive = &corev3.KeepaliveSettings{Interval: ka.GetInterval(), Timeout: ka.GetTimeout()}
	}
	return h2
}

// applyTCPKeepalive turns TCP keepalive on for the cluster's upstream
// sockets when MeshConfig.tcpKeepalive or the rule's tcp.tcpKeepalive asks
// for it, the rule's attributes over the mesh's one by one, as Istio
// does. Istio passes time and interval in whole seconds.
func (t *translation) applyTCPKeepalive(c *clusterv3.Cluster, tcp *networking.ConnectionPoolSettings_TCPSettings) {
	if t.proxy.Generator == GeneratorGRPC {
		return // grpc-go has keepalive of its own, not Envoy's
	}
	for _, ka := range []*networking.ConnectionPoolSettings_TCPSettings_TcpKeepalive{t.w.Mesh.GetTcpKeepalive(), tcp.GetTcpKeepalive()} {
		if ka == nil {
			continue
		}
		if c.UpstreamConnectionOptions == nil {
			c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{}}
		}
		k := c.UpstreamConnectionOptions.TcpKeepalive
		if ka.GetProbes() > 0 {
			k.KeepaliveProbes = wrapperspb.UInt32(ka.GetProbes())
		}
		if ka.GetTime() != nil {
			k.KeepaliveTime = wrapperspb.UInt32(uint32(ka.GetTime().GetSeconds()))
		}
		if ka.GetInterval() != nil {
			k.KeepaliveInterval = wrapperspb.UInt32(uint32(ka.GetInterval().GetSeconds()))
		}
	}
}

// tcpProxyLimits gives an outbound TCP proxy filter the idle timeout and
// maximum connection duration of the DestinationRule for host (as seen
// from namespace ns): Istio reads them from the rule's top-level
// connectionPool.tcp only, not from subsets or port-level settings, and
// without an idle timeout leaves Envoy's default of an hour. f is
// returned as it is when the rule sets neither.
func (t *translation) tcpProxyLimits(f *listenerv3.Filter, host, ns string) *listenerv3.Filter {
	var idle, age *durationpb.Duration
	if o := t.w.destinationRuleObject(t.proxy, host, ns); o != nil {
		tcp := o.Spec.(*networking.DestinationRule).GetTrafficPolicy().GetConnectionPool().GetTcp()
		idle, age = tcp.GetIdleTimeout(), tcp.GetMaxConnectionDuration()
	}
	if idle == nil && age == nil {
		return f
	}
	tp := &tcpproxyv3.TcpProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
		t.log.Error("cannot decode a TCP proxy filter built here; this is a Trellis bug", "err", err)
		return f
	}
	tp.IdleTimeout, tp.MaxDownstreamConnectionDuration = idle, age
	return &listenerv3.Filter{Name: f.GetName(), ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
}

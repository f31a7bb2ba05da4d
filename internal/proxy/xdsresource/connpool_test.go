package xdsresource_test

import (
	"errors"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// poolConfig is a service with an HTTP, a gRPC and a TCP port under a
// DestinationRule that sets every connectionPool field shaping
// connections, and a second one whose rule has the client choose the
// protocol, beside a MeshConfig TCP keepalive that the rule overrides
// attribute by attribute.
const poolConfig = `apiVersion: v1
kind: Service
metadata: {name: pool}
spec:
  selector: {app: pool}
  ports: [{name: http, port: 9080}, {name: grpc, port: 7070}, {name: tcp-db, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: pool}
spec: {address: 127.10.0.40, labels: {app: pool}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pool}
spec:
  host: pool
  trafficPolicy:
    connectionPool:
      tcp:
        tcpKeepalive: {time: 7s, interval: 3s}
        maxConnectionDuration: 90s
        idleTimeout: 40s
      http:
        maxConcurrentStreams: 8
        http2MaxRequests: 500
        http2KeepAlive: {interval: 10s, timeout: 2s}
---
apiVersion: v1
kind: Service
metadata: {name: client-proto}
spec:
  selector: {app: client-proto}
  ports: [{name: http, port: 9080}, {name: grpc, port: 7070}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client-proto}
spec: {address: 127.10.0.41, labels: {app: client-proto}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: client-proto}
spec:
  host: client-proto
  trafficPolicy:
    connectionPool:
      http: {useClientProtocol: true, maxConcurrentStreams: 8}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    tcpKeepalive: {probes: 5, time: 60s}
`

// The translator's connectionPool output, decoded by the sidecar: each
// field lands where the proxy acts on it, with Istio's mapping (tcp
// idleTimeout as the HTTP idle timeout when http sets none, keepalive
// attributes over MeshConfig's, maxConcurrentStreams and pings only on
// HTTP/2 clusters, useClientProtocol as the downstream's protocol), and
// the TCP listener carries the rule's idle timeout and age limit.
func TestTranslatorConnectionPoolLiteral(t *testing.T) {
	res := translate.ForProxy(world(t, poolConfig), sidecarProxy, nil)
	clusters := map[string]*xdsresource.Cluster{}
	for _, c := range res.Clusters {
		_, v, err := decode(xdsresource.ClusterType, marshal(t, c))
		if err != nil {
			t.Fatalf("cluster %s: %v", c.Name, err)
		}
		clusters[c.Name] = v.(*xdsresource.Cluster)
	}
	ka := &xdsresource.TCPKeepalive{Probes: 5, Time: 7, Interval: 3}
	type want struct {
		HTTP2, Downstream bool
		Idle, Age         time.Duration
		Streams           uint32
		Ping              *xdsresource.HTTP2Keepalive
		Keepalive         *xdsresource.TCPKeepalive
	}
	wants := map[string]want{
		"outbound|9080||pool.default.svc.cluster.local": {Idle: 40 * time.Second, Age: 90 * time.Second, Keepalive: ka},
		"outbound|7070||pool.default.svc.cluster.local": {HTTP2: true, Idle: 40 * time.Second, Age: 90 * time.Second, Streams: 8,
			Ping: &xdsresource.HTTP2Keepalive{Interval: 10 * time.Second, Timeout: 2 * time.Second}, Keepalive: ka},
		"outbound|9000||pool.default.svc.cluster.local": {Idle: 40 * time.Second, Age: 90 * time.Second, Keepalive: ka},
		// Istio replaces the port's HTTP/2 with the client's protocol,
		// and its HTTP/2 options with empty ones.
		"outbound|9080||client-proto.default.svc.cluster.local": {Downstream: true, Keepalive: &xdsresource.TCPKeepalive{Probes: 5, Time: 60}},
		"outbound|7070||client-proto.default.svc.cluster.local": {Downstream: true, Keepalive: &xdsresource.TCPKeepalive{Probes: 5, Time: 60}},
		// MeshConfig's keepalive holds for traffic to unknown hosts too.
		"PassthroughCluster": {Keepalive: &xdsresource.TCPKeepalive{Probes: 5, Time: 60}},
	}
	for name, w := range wants {
		c := clusters[name]
		if c == nil {
			t.Errorf("no cluster %s", name)
			continue
		}
		got := want{HTTP2: c.HTTP2, Downstream: c.DownstreamProtocol, Idle: c.IdleTimeout, Age: c.MaxConnectionDuration,
			Streams: c.MaxConcurrentStreams, Ping: c.HTTP2Keepalive, Keepalive: c.TCPKeepalive}
		if d := cmp.Diff(w, got); d != "" {
			t.Errorf("cluster %s (-want +got):\n%s", name, d)
		}
	}

	var tcp *xdsresource.TCPProxy
	for _, l := range res.Listeners {
		_, v, err := decode(xdsresource.ListenerType, marshal(t, l))
		if err != nil {
			t.Fatalf("listener %s: %v", l.Name, err)
		}
		for _, fc := range v.(*xdsresource.Listener).FilterChains {
			if fc.TCP != nil && fc.TCP.Cluster == "outbound|9000||pool.default.svc.cluster.local" {
				tcp = fc.TCP
			}
		}
	}
	if tcp == nil {
		t.Fatal("no TCP proxy to pool:9000")
	}
	if tcp.TCPIdleTimeout() != 40*time.Second || tcp.MaxConnectionDuration != 90*time.Second {
		t.Errorf("TCP proxy to pool:9000: idle %v, age %v; want the rule's 40s and 90s", tcp.TCPIdleTimeout(), tcp.MaxConnectionDuration)
	}
}

// A TCP proxy without idle_timeout idles out after Envoy's hour; 0s turns
// it off.
func TestTCPProxyIdleTimeoutDefault(t *testing.T) {
	for _, tc := range []struct {
		idle *durationpb.Duration
		want time.Duration
	}{{nil, time.Hour}, {durationpb.New(0), 0}, {durationpb.New(5 * time.Second), 5 * time.Second}} {
		tp := &tcpproxyv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}, IdleTimeout: tc.idle}
		l := &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, tp)}}}}}}
		got, err := xdsresource.DecodeListener(marshal(t, l))
		if err != nil {
			t.Fatal(err)
		}
		if d := got.FilterChains[0].TCP.TCPIdleTimeout(); d != tc.want {
			t.Errorf("idle_timeout %v: idle limit %v, want %v", tc.idle, d, tc.want)
		}
	}
}

// What the proxy cannot honour of these messages is refused, by path.
func TestConnectionPoolRefusals(t *testing.T) {
	withOpts := func(opts *upstreamhttp.HttpProtocolOptions) *clusterv3.Cluster {
		return &clusterv3.Cluster{Name: "c", TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, opts)}}
	}
	h2 := func(o *corev3.Http2ProtocolOptions) *clusterv3.Cluster {
		return withOpts(&upstreamhttp.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: o}}}})
	}
	const opts = `typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].value.`
	for _, tc := range []struct {
		c    *clusterv3.Cluster
		path string
	}{
		{&clusterv3.Cluster{Name: "c", UpstreamConnectionOptions: &clusterv3.UpstreamConnectionOptions{HappyEyeballsConfig: &clusterv3.UpstreamConnectionOptions_HappyEyeballsConfig{}}},
			"upstream_connection_options.happy_eyeballs_config"},
		{withOpts(&upstreamhttp.HttpProtocolOptions{CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxStreamDuration: durationpb.New(time.Second)}}),
			opts + "common_http_protocol_options.max_stream_duration"},
		{h2(&corev3.Http2ProtocolOptions{ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(time.Second)}}),
			opts + "explicit_http_config.http2_protocol_options.connection_keepalive.timeout"},
		{h2(&corev3.Http2ProtocolOptions{ConnectionKeepalive: &corev3.KeepaliveSettings{Timeout: durationpb.New(time.Second), ConnectionIdleInterval: durationpb.New(time.Second)}}),
			opts + "explicit_http_config.http2_protocol_options.connection_keepalive.connection_idle_interval"},
	} {
		_, err := xdsresource.DecodeCluster(marshal(t, tc.c))
		var xe *xdsresource.Error
		if !errors.As(err, &xe) || xe.Path != tc.path {
			t.Errorf("decode: %v, want an error at %s", err, tc.path)
		}
	}
	// Keepalive attributes left unset keep the kernel's.
	c, err := xdsresource.DecodeCluster(marshal(t, &clusterv3.Cluster{Name: "c", UpstreamConnectionOptions: &clusterv3.UpstreamConnectionOptions{
		TcpKeepalive: &corev3.TcpKeepalive{KeepaliveTime: wrapperspb.UInt32(30)}}}))
	if err != nil || c.TCPKeepalive == nil || *c.TCPKeepalive != (xdsresource.TCPKeepalive{Time: 30}) {
		t.Errorf("tcp_keepalive {keepalive_time: 30}: %+v, %v", c.TCPKeepalive, err)
	}
}

//lint:file-ignore SA1019 control planes still send the deprecated fields, so the decoder reads them and the tests encode them.

package xdsresource_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func addr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func router(t testing.TB) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}
}

func hcmFilter(t testing.TB, h *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}}
}

func tcpFilter(t testing.TB, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t,
		&tcpproxyv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}})}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func toCluster(c string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c}}}
}

func rcWith(routes ...*routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: routes}}}
}

func stringMatch(sm *matcherv3.StringMatcher) *routev3.HeaderMatcher_StringMatch {
	return &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
}

func safeRegex(re string) *matcherv3.RegexMatcher { return &matcherv3.RegexMatcher{Regex: re} }

func TestListenerFields(t *testing.T) {
	l := &listenerv3.Listener{
		Name:             "l",
		Address:          addr("10.0.0.1", 8080),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"trellis": {Fields: map[string]*structpb.Value{"host": structpb.NewStringValue("db.ns.svc.cluster.local"), "n": structpb.NewNumberValue(1)}},
			"other":   {Fields: map[string]*structpb.Value{"host": structpb.NewStringValue("ignored")}},
		}},
		FilterChains: []*listenerv3.FilterChain{
			{Name: "http", FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9080)},
				Filters: []*listenerv3.Filter{hcmFilter(t, &hcmv3.HttpConnectionManager{StatPrefix: "in",
					RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rcWith(&routev3.Route{Match: prefix("/"), Action: toCluster("c")})},
					HttpFilters: []*hcmv3.HttpFilter{
						{Name: "envoy.filters.http.fault", IsOptional: true},
						{Name: "envoy.filters.http.cors", Disabled: true},
						{Name: "envoy.filters.http.router"}, // by name, no typed_config
					}})}},
			{Name: "tcp", Filters: []*listenerv3.Filter{tcpFilter(t, "db")}},
		},
	}
	got, err := xdsresource.DecodeListener(marshal(t, l))
	if err != nil {
		t.Fatal(err)
	}
	want := &xdsresource.Listener{
		Name: "l", Address: "10.0.0.1", Port: 8080, BindToPort: true, UseOriginalDst: true, Direction: xdsresource.Inbound,
		Host: "db.ns.svc.cluster.local",
		FilterChains: []xdsresource.FilterChain{
			{Name: "http", DestinationPort: 9080, HTTP: &xdsresource.HTTPConnectionManager{StatPrefix: "in", RouteConfig: &xdsresource.RouteConfig{
				Name: "rc", VirtualHosts: []xdsresource.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []xdsresource.Route{{
					Match:  xdsresource.RouteMatch{Path: "/"},
					Action: &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: "c", Weight: 1}}, TotalWeight: 1, Timeout: 15 * time.Second},
				}}}}}}},
			{Name: "tcp", TCP: &xdsresource.TCPProxy{StatPrefix: "s", Cluster: "db"}},
		},
	}
	if d := cmp.Diff(want, got, cmpRegexp); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

func TestRouteFields(t *testing.T) {
	rc := &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{
		Name: "vh", Domains: []string{"a.example", "*.b.example", "c.*"},
		Routes: []*routev3.Route{
			{Name: "headers", Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"},
				CaseSensitive: wrapperspb.Bool(true),
				Headers: []*routev3.HeaderMatcher{
					{Name: "X-Exact", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "e"}},
					{Name: "x-prefix", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "p"}},
					{Name: "x-suffix", HeaderMatchSpecifier: &routev3.HeaderMatcher_SuffixMatch{SuffixMatch: "s"}},
					{Name: "x-contains", HeaderMatchSpecifier: &routev3.HeaderMatcher_ContainsMatch{ContainsMatch: "c"}},
					{Name: "x-re", HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: safeRegex("a|b")}},
					{Name: "x-sm", InvertMatch: true, HeaderMatchSpecifier: stringMatch(&matcherv3.StringMatcher{IgnoreCase: true,
						MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "Z"}})},
					{Name: "x-contains2", HeaderMatchSpecifier: stringMatch(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "k"}})},
					{Name: "x-absent", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}},
					{Name: "x-bare"},
				},
				QueryParameters: []*routev3.QueryParameterMatcher{
					{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: safeRegex("[0-9]+")}}}},
					{Name: "p", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}},
				}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
						{Name: "a", Weight: wrapperspb.UInt32(3), ResponseHeadersToRemove: []string{"x"}},
						{Name: "b", Weight: wrapperspb.UInt32(0)},
						{Name: "c", Weight: wrapperspb.UInt32(1)},
					}}},
					Timeout:              durationpb.New(1500 * time.Millisecond),
					HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "h"},
					RegexRewrite:         &matcherv3.RegexMatchAndSubstitute{Pattern: safeRegex("^/api/(.*)$"), Substitution: `/\1/$x\\`},
					HashPolicy: []*routev3.RouteAction_HashPolicy{
						{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "X-User"}}},
						{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "u"}}},
						{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}},
						{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "s"}}},
					},
				}},
				RequestHeadersToAdd: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "x-append"}},
					{Header: &corev3.HeaderValue{Key: "x-old-overwrite", Value: "v"}, Append: wrapperspb.Bool(false)},
					{Header: &corev3.HeaderValue{Key: "x-old-append", Value: "v"}, Append: wrapperspb.Bool(true)},
					{Header: &corev3.HeaderValue{Key: "x-raw", RawValue: []byte("raw")}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
				},
			},
			{Name: "redirect", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/old"}, CaseSensitive: wrapperspb.Bool(false)},
				Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
					SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
					HostRedirect:           "h", PortRedirect: 443,
					PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"},
					ResponseCode:         routev3.RedirectAction_SEE_OTHER,
				}}},
			{Name: "default-redirect", Match: prefix("/r"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{HostRedirect: "x"}}},
			{Name: "bytes", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: safeRegex("/b.*")}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 503,
					Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte{0, 1}}}}}},
		},
	}}}
	got, err := xdsresource.DecodeRouteConfig(marshal(t, rc))
	if err != nil {
		t.Fatal(err)
	}
	want := &xdsresource.RouteConfig{Name: "rc", VirtualHosts: []xdsresource.VirtualHost{{
		Name: "vh", Domains: []string{"a.example", "*.b.example", "c.*"},
		Routes: []xdsresource.Route{
			{Name: "headers", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathSeparatedPrefix, Path: "/api",
				Headers: []xdsresource.HeaderMatcher{
					{Name: "x-exact", Match: xdsresource.StringMatcher{Kind: xdsresource.StringExact, Value: "e"}},
					{Name: "x-prefix", Match: xdsresource.StringMatcher{Kind: xdsresource.StringPrefix, Value: "p"}},
					{Name: "x-suffix", Match: xdsresource.StringMatcher{Kind: xdsresource.StringSuffix, Value: "s"}},
					{Name: "x-contains", Match: xdsresource.StringMatcher{Kind: xdsresource.StringContains, Value: "c"}},
					{Name: "x-re", Match: xdsresource.StringMatcher{Kind: xdsresource.StringRegex, Value: "a|b", Regex: regexp.MustCompile("^(?:a|b)$")}},
					{Name: "x-sm", Invert: true, Match: xdsresource.StringMatcher{Kind: xdsresource.StringSuffix, Value: "Z", IgnoreCase: true}},
					{Name: "x-contains2", Match: xdsresource.StringMatcher{Kind: xdsresource.StringContains, Value: "k"}},
					{Name: "x-absent", Present: true, Invert: true},
					{Name: "x-bare", Present: true},
				},
				QueryParams: []xdsresource.QueryParamMatcher{
					{Name: "q", Match: xdsresource.StringMatcher{Kind: xdsresource.StringRegex, Value: "[0-9]+", Regex: regexp.MustCompile("^(?:[0-9]+)$")}},
					{Name: "p", Present: true},
				}},
				Action: &xdsresource.RouteAction{
					Clusters: []xdsresource.WeightedCluster{
						{Name: "a", Weight: 3, ResponseHeadersToRemove: []string{"x"}},
						{Name: "b"},
						{Name: "c", Weight: 1},
					},
					TotalWeight: 4, Timeout: 1500 * time.Millisecond, HostRewrite: "h",
					RegexRewrite: regexp.MustCompile("^/api/(.*)$"), RegexSubstitution: `/${1}/$$x\`,
					HashPolicies: []xdsresource.HashPolicy{
						{Kind: xdsresource.HashHeader, Name: "x-user"},
						{Kind: xdsresource.HashQueryParam, Name: "u"},
						{Kind: xdsresource.HashSourceIP},
						{Kind: xdsresource.HashCookie, Name: "s"},
					},
				},
				RequestHeadersToAdd: []xdsresource.HeaderValueOption{
					{Name: "x-append", Append: true},
					{Name: "x-old-overwrite", Value: "v"},
					{Name: "x-old-append", Value: "v", Append: true},
					{Name: "x-raw", Value: "raw"},
				},
			},
			{Name: "redirect", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathExact, Path: "/old", CaseInsensitive: true},
				Redirect: &xdsresource.Redirect{Scheme: "https", Host: "h", Port: 443, Path: "/new", Code: 303}},
			{Name: "default-redirect", Match: xdsresource.RouteMatch{Path: "/r"}, Redirect: &xdsresource.Redirect{Host: "x", Code: 301}},
			{Name: "bytes", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathRegex, Path: "/b.*", PathRegex: regexp.MustCompile("^(?:/b.*)$")},
				Direct: &xdsresource.DirectResponse{Status: 503, Body: []byte{0, 1}}},
		},
	}}}
	if d := cmp.Diff(want, got, cmpRegexp); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	// The rewritten substitution works with Go's regexp as Envoy's does.
	a := got.VirtualHosts[0].Routes[0].Action
	if s := a.RegexRewrite.ReplaceAllString("/api/v1", a.RegexSubstitution); s != `/v1/$x\` {
		t.Errorf("rewrite = %q", s)
	}
	// Regexes match the whole value, not a substring.
	if re := got.VirtualHosts[0].Routes[3].Match.PathRegex; re.MatchString("/x/b") || !re.MatchString("/bb") {
		t.Errorf("path regex %v is not anchored", re)
	}
}

func TestRedirectCodes(t *testing.T) {
	for code, want := range map[routev3.RedirectAction_RedirectResponseCode]int{
		routev3.RedirectAction_MOVED_PERMANENTLY: 301, routev3.RedirectAction_FOUND: 302, routev3.RedirectAction_SEE_OTHER: 303,
		routev3.RedirectAction_TEMPORARY_REDIRECT: 307, routev3.RedirectAction_PERMANENT_REDIRECT: 308,
	} {
		rc := rcWith(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "http"}, ResponseCode: code}}})
		got, err := xdsresource.DecodeRouteConfig(marshal(t, rc))
		if err != nil {
			t.Fatal(err)
		}
		if r := got.VirtualHosts[0].Routes[0].Redirect; r.Code != want || r.Scheme != "http" {
			t.Errorf("%v: got %+v, want code %d", code, r, want)
		}
	}
}

func TestClusterFields(t *testing.T) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "dns", Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr("db.example", 5432)}}}},
	}}}
	for _, tc := range []struct {
		name string
		in   *clusterv3.Cluster
		want *xdsresource.Cluster
	}{{
		name: "defaults",
		in:   &clusterv3.Cluster{Name: "s"},
		want: &xdsresource.Cluster{Name: "s", Type: xdsresource.ClusterStatic, ConnectTimeout: 5 * time.Second},
	}, {
		name: "strict dns, ring hash, breakers, http2",
		in: &clusterv3.Cluster{Name: "d", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			LbPolicy: clusterv3.Cluster_RING_HASH, ConnectTimeout: durationpb.New(time.Second),
			LbConfig: &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(512)}},
			CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
				{Priority: corev3.RoutingPriority_HIGH, MaxConnections: wrapperspb.UInt32(999)},
				{MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(2), MaxRequests: wrapperspb.UInt32(3), MaxRetries: wrapperspb.UInt32(4)},
			}},
			TypedExtensionProtocolOptions: map[string]*anypb.Any{
				"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &upstreamhttp.HttpProtocolOptions{
					CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(time.Minute), MaxRequestsPerConnection: wrapperspb.UInt32(7)},
					UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}},
				}),
				"envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions": {TypeUrl: "type.googleapis.com/unknown"},
			},
			LoadAssignment: cla,
		},
		want: &xdsresource.Cluster{Name: "d", Type: xdsresource.ClusterStrictDNS, LBPolicy: xdsresource.LBRingHash, ConnectTimeout: time.Second,
			RingMinSize: 512, CircuitBreakers: xdsresource.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 2, MaxRequests: 3, MaxRetries: 4},
			HTTP2: true, IdleTimeout: time.Minute, MaxRequestsPerConnection: 7,
			LoadAssignment: &xdsresource.ClusterLoadAssignment{ClusterName: "dns", Localities: []xdsresource.LocalityEndpoints{{
				Endpoints: []xdsresource.Endpoint{{Address: "db.example", Port: 5432, Weight: 1, Healthy: true}}}}}},
	}, {
		name: "logical dns, maglev, downstream protocol",
		in: &clusterv3.Cluster{Name: "m", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS},
			LbPolicy: clusterv3.Cluster_MAGLEV,
			LbConfig: &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(131)}},
			TypedExtensionProtocolOptions: map[string]*anypb.Any{
				"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &upstreamhttp.HttpProtocolOptions{
					UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &upstreamhttp.HttpProtocolOptions_UseDownstreamHttpConfig{}}}),
			}},
		want: &xdsresource.Cluster{Name: "m", Type: xdsresource.ClusterLogicalDNS, LBPolicy: xdsresource.LBMaglev, ConnectTimeout: 5 * time.Second, MaglevTableSize: 131, DownstreamProtocol: true},
	}, {
		name: "eds random, deprecated cluster-level options",
		in: &clusterv3.Cluster{Name: "e", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}, LbPolicy: clusterv3.Cluster_RANDOM,
			Http2ProtocolOptions:      &corev3.Http2ProtocolOptions{},
			CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(time.Second)},
			MaxRequestsPerConnection:  wrapperspb.UInt32(9)},
		want: &xdsresource.Cluster{Name: "e", Type: xdsresource.ClusterEDS, LBPolicy: xdsresource.LBRandom, ConnectTimeout: 5 * time.Second,
			HTTP2: true, IdleTimeout: time.Second, MaxRequestsPerConnection: 9},
	}, {
		name: "peak ewma, other trellis and envoy metadata ignored",
		in: &clusterv3.Cluster{Name: "p", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}, LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"trellis":  {Fields: map[string]*structpb.Value{"lb": structpb.NewStringValue("PEAK_EWMA"), "other": structpb.NewStringValue("x")}},
				"envoy.lb": {Fields: map[string]*structpb.Value{"lb": structpb.NewStringValue("unknown to trellis")}},
			}}},
		want: &xdsresource.Cluster{Name: "p", Type: xdsresource.ClusterEDS, LBPolicy: xdsresource.LBLeastRequest, ConnectTimeout: 5 * time.Second, PeakEWMA: true},
	}, {
		name: "explicit http1",
		in: &clusterv3.Cluster{Name: "h1", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}, LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
			TypedExtensionProtocolOptions: map[string]*anypb.Any{
				"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &upstreamhttp.HttpProtocolOptions{
					UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}}}),
			}},
		want: &xdsresource.Cluster{Name: "h1", Type: xdsresource.ClusterEDS, LBPolicy: xdsresource.LBLeastRequest, ConnectTimeout: 5 * time.Second},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := xdsresource.DecodeCluster(marshal(t, tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestCLAFields(t *testing.T) {
	ep := func(ip string, hs corev3.HealthStatus, w *wrapperspb.UInt32Value) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr(ip, 80)}},
			HealthStatus: hs, LoadBalancingWeight: w}
	}
	in := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{Locality: &corev3.Locality{Region: "r", Zone: "z", SubZone: "s"}, LoadBalancingWeight: wrapperspb.UInt32(10), Priority: 1,
			LbEndpoints: []*endpointv3.LbEndpoint{
				ep("10.0.0.1", corev3.HealthStatus_UNKNOWN, nil),
				ep("10.0.0.2", corev3.HealthStatus_HEALTHY, wrapperspb.UInt32(5)),
				ep("10.0.0.3", corev3.HealthStatus_UNHEALTHY, nil),
				ep("10.0.0.4", corev3.HealthStatus_DRAINING, nil),
				ep("10.0.0.5", corev3.HealthStatus_TIMEOUT, nil),
				ep("10.0.0.6", corev3.HealthStatus_DEGRADED, nil),
			}},
		{},
	}}
	// Envoy's envoy.transport_socket_match metadata, which the translator
	// sends alongside tlsMode, is accepted and ignored: only
	// trellis.tlsMode sets TLSMode.
	socketMatch := &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}
	in.Endpoints[0].LbEndpoints[0].Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": {Fields: map[string]*structpb.Value{
		"workload": structpb.NewStringValue("w"), "namespace": structpb.NewStringValue("n"), "serviceAccount": structpb.NewStringValue("sa"),
		"tlsMode": structpb.NewStringValue("istio"),
	}}, "envoy.transport_socket_match": socketMatch}}
	in.Endpoints[0].LbEndpoints[1].Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": {Fields: map[string]*structpb.Value{
		"tlsMode": structpb.NewStringValue("istio"),
	}}, "envoy.transport_socket_match": socketMatch}}
	in.Endpoints[0].LbEndpoints[2].Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.transport_socket_match": socketMatch}}
	got, err := xdsresource.DecodeClusterLoadAssignment(marshal(t, in))
	if err != nil {
		t.Fatal(err)
	}
	want := &xdsresource.ClusterLoadAssignment{ClusterName: "c", Localities: []xdsresource.LocalityEndpoints{
		{Region: "r", Zone: "z", SubZone: "s", Weight: 10, Priority: 1, Endpoints: []xdsresource.Endpoint{
			{Address: "10.0.0.1", Port: 80, Weight: 1, Healthy: true, Workload: "w", Namespace: "n", ServiceAccount: "sa", TLSMode: "istio"},
			{Address: "10.0.0.2", Port: 80, Weight: 5, Healthy: true, TLSMode: "istio"},
			{Address: "10.0.0.3", Port: 80, Weight: 1},
			{Address: "10.0.0.4", Port: 80, Weight: 1},
			{Address: "10.0.0.5", Port: 80, Weight: 1},
			{Address: "10.0.0.6", Port: 80, Weight: 1, Degraded: true},
		}},
		{},
	}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// TestUnknownFieldsSkipped: fields Trellis does not use, including ones
// added to Envoy's API after this decoder, are skipped, not refused.
func TestUnknownFieldsSkipped(t *testing.T) {
	unknown := protowire.AppendTag(nil, 999, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("future"))
	unknown = protowire.AppendTag(unknown, 998, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 42)
	unknown = protowire.AppendTag(unknown, 997, protowire.Fixed64Type)
	unknown = protowire.AppendFixed64(unknown, 1)
	unknown = protowire.AppendTag(unknown, 996, protowire.Fixed32Type)
	unknown = protowire.AppendFixed32(unknown, 1)
	unknown = protowire.AppendTag(unknown, 995, protowire.StartGroupType)
	unknown = protowire.AppendTag(unknown, 995, protowire.EndGroupType)

	l := &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tcpFilter(t, "c")}}},
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector"}}, // sniffing is the proxy's own
		StatPrefix:      "x"}
	l.ProtoReflect().SetUnknown(unknown)
	if _, err := xdsresource.DecodeListener(marshal(t, l)); err != nil {
		t.Errorf("listener: %v", err)
	}
	c := &clusterv3.Cluster{Name: "c", DnsLookupFamily: clusterv3.Cluster_V4_ONLY, AltStatName: "x"}
	c.ProtoReflect().SetUnknown(unknown)
	if _, err := xdsresource.DecodeCluster(marshal(t, c)); err != nil {
		t.Errorf("cluster: %v", err)
	}
	rc := rcWith(&routev3.Route{Match: prefix("/"), Action: toCluster("c"), Decorator: &routev3.Decorator{Operation: "op"}})
	rc.ProtoReflect().SetUnknown(unknown)
	rc.VirtualHosts[0].ProtoReflect().SetUnknown(unknown)
	if _, err := xdsresource.DecodeRouteConfig(marshal(t, rc)); err != nil {
		t.Errorf("route: %v", err)
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Policy: &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(140)}}
	cla.ProtoReflect().SetUnknown(unknown)
	if _, err := xdsresource.DecodeClusterLoadAssignment(marshal(t, cla)); err != nil {
		t.Errorf("cla: %v", err)
	}
}

// TestErrors checks that what the proxy cannot honour is refused, with the
// path to the offending field.
func TestErrors(t *testing.T) {
	route := func(r *routev3.Route) proto.Message { return rcWith(r) }
	matchRoute := func(m *routev3.RouteMatch) proto.Message {
		return rcWith(&routev3.Route{Match: m, Action: toCluster("c")})
	}
	header := func(h *routev3.HeaderMatcher) proto.Message {
		return matchRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{h}})
	}
	action := func(a *routev3.RouteAction) proto.Message {
		return rcWith(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_Route{Route: a}})
	}
	cluster := func(a *routev3.RouteAction) *routev3.RouteAction {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "c"}
		return a
	}
	listener := func(fc *listenerv3.FilterChain) proto.Message {
		return &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1), FilterChains: []*listenerv3.FilterChain{fc}}
	}
	hcm := func(h *hcmv3.HttpConnectionManager) proto.Message {
		if h.RouteSpecifier == nil {
			h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}}
		}
		return listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{hcmFilter(t, h)}})
	}
	cla := func(e *endpointv3.LbEndpoint) proto.Message {
		return &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{}, {LbEndpoints: []*endpointv3.LbEndpoint{e}}}}
	}
	withEndpoint := func(e *endpointv3.LbEndpoint) *endpointv3.LbEndpoint {
		e.HostIdentifier = &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr("10.0.0.1", 80)}}
		return e
	}
	protoOpts := func(o *upstreamhttp.HttpProtocolOptions) proto.Message {
		return &clusterv3.Cluster{Name: "c", TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, o)}}
	}

	for _, tc := range []struct {
		name    string
		typeURL string
		in      proto.Message
		want    string
	}{
		// Route configurations.
		{"bad path regex", xdsresource.RouteType, rcWith(
			&routev3.Route{Match: prefix("/"), Action: toCluster("c")},
			&routev3.Route{Match: prefix("/"), Action: toCluster("c")},
			&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: safeRegex("(")}}, Action: toCluster("c")},
		), `virtual_hosts[0].routes[2].match.safe_regex: invalid regex "(": `},
		{"bad header regex", xdsresource.RouteType, header(&routev3.HeaderMatcher{Name: "h", HeaderMatchSpecifier: stringMatch(&matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: safeRegex("[")}})}), `routes[0].match.headers[0].string_match.safe_regex: invalid regex "["`},
		{"bad deprecated header regex", xdsresource.RouteType, header(&routev3.HeaderMatcher{Name: "h",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: safeRegex("*")}}), `headers[0].safe_regex_match: invalid regex`},
		{"range match", xdsresource.RouteType, header(&routev3.HeaderMatcher{Name: "h",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 1, End: 2}}}), `headers[0].range_match: not supported`},
		{"custom string matcher", xdsresource.RouteType, header(&routev3.HeaderMatcher{Name: "h", HeaderMatchSpecifier: stringMatch(&matcherv3.StringMatcher{})}),
			`headers[0].string_match: needs one of`},
		{"header without name", xdsresource.RouteType, header(&routev3.HeaderMatcher{}), `headers[0].name: required`},
		{"query present false", xdsresource.RouteType, matchRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{}}}}),
			`query_parameters[0].present_match`},
		{"bad query regex", xdsresource.RouteType, matchRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{
				StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: safeRegex("a{2,1}")}}}}}}),
			`query_parameters[0].string_match.safe_regex: invalid regex "a{2,1}"`},
		{"no path specifier", xdsresource.RouteType, matchRoute(&routev3.RouteMatch{}), `routes[0].match: needs one of prefix`},
		{"connect matcher", xdsresource.RouteType, matchRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_ConnectMatcher_{ConnectMatcher: &routev3.RouteMatch_ConnectMatcher{}}}),
			`match.connect_matcher: not supported`},
		{"runtime fraction", xdsresource.RouteType, matchRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			RuntimeFraction: &corev3.RuntimeFractionalPercent{}}), `match.runtime_fraction: not supported`},
		{"grpc match", xdsresource.RouteType, matchRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}), `match.grpc: not supported`},
		{"bad separated prefix", xdsresource.RouteType, matchRoute(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/a/"}}),
			`match.path_separated_prefix:`},
		{"no match", xdsresource.RouteType, route(&routev3.Route{Action: toCluster("c")}), `routes[0].match: required`},
		{"no action", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/")}), `routes[0]: needs one of route, redirect or direct_response`},
		{"filter action", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_FilterAction{FilterAction: &routev3.FilterAction{}}}),
			`routes[0].filter_action: not supported`},
		{"no cluster", xdsresource.RouteType, action(&routev3.RouteAction{}), `routes[0].route: needs cluster or weighted_clusters`},
		{"empty cluster", xdsresource.RouteType, action(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{}}), `route.cluster: required`},
		{"cluster header", xdsresource.RouteType, action(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_ClusterHeader{ClusterHeader: "x"}}),
			`route.cluster_header: not supported`},
		{"zero total weight", xdsresource.RouteType, action(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
			Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "a", Weight: wrapperspb.UInt32(0)}, {Name: "b"}}}}}),
			`route.weighted_clusters.clusters: total weight must be > 0`},
		{"unnamed weighted cluster", xdsresource.RouteType, action(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
			Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "a", Weight: wrapperspb.UInt32(1)}, {Weight: wrapperspb.UInt32(1)}}}}}),
			`weighted_clusters.clusters[1].name: required`},
		{"weighted by header", xdsresource.RouteType, action(&routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
			Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "a", Weight: wrapperspb.UInt32(1)}}, RandomValueSpecifier: &routev3.WeightedCluster_HeaderName{HeaderName: "x"}}}}),
			`weighted_clusters.header_name: not supported`},
		{"retry on request headers", xdsresource.RouteType, action(cluster(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{RetriableRequestHeaders: []*routev3.HeaderMatcher{{Name: "x"}}}})), `route.retry_policy.retriable_request_headers: not supported`},
		{"unknown retry condition", xdsresource.RouteType, action(cluster(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{RetryOn: "5xx,sometimes"}})), `route.retry_policy.retry_on: unknown retry condition "sometimes"`},
		{"other host predicate", xdsresource.RouteType, action(cluster(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.canary_hosts"}}}})), `route.retry_policy.retry_host_predicate[0]: host predicate`},
		{"zero back-off", xdsresource.RouteType, action(cluster(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: &durationpb.Duration{}}}})), `route.retry_policy.retry_back_off.base_interval: must be > 0`},
		{"subset metadata", xdsresource.RouteType, action(cluster(&routev3.RouteAction{MetadataMatch: &corev3.Metadata{}})), `route.metadata_match: not supported`},
		{"negative timeout", xdsresource.RouteType, action(cluster(&routev3.RouteAction{Timeout: &durationpb.Duration{Seconds: -1}})), `route.timeout: must not be negative`},
		{"huge timeout", xdsresource.RouteType, action(cluster(&routev3.RouteAction{Timeout: &durationpb.Duration{Seconds: 1 << 40}})), `route.timeout:`},
		{"bad nanos", xdsresource.RouteType, action(cluster(&routev3.RouteAction{Timeout: &durationpb.Duration{Nanos: 2e9}})), `route.timeout: nanos`},
		{"bad rewrite regex", xdsresource.RouteType, action(cluster(&routev3.RouteAction{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: safeRegex("(?P<")}})),
			`route.regex_rewrite.pattern: invalid regex`},
		{"rewrite without pattern", xdsresource.RouteType, action(cluster(&routev3.RouteAction{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{}})),
			`route.regex_rewrite.pattern: required`},
		{"both rewrites", xdsresource.RouteType, action(cluster(&routev3.RouteAction{PrefixRewrite: "/a", RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: safeRegex("a")}})),
			`route.regex_rewrite: cannot be combined`},
		{"auto host rewrite", xdsresource.RouteType, action(cluster(&routev3.RouteAction{HostRewriteSpecifier: &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}})),
			`route.auto_host_rewrite: not supported`},
		{"filter state hash", xdsresource.RouteType, action(cluster(&routev3.RouteAction{HashPolicy: []*routev3.RouteAction_HashPolicy{
			{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x"}}},
			{PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: "k"}}}}})),
			`route.hash_policy[1].filter_state: not supported`},
		{"empty hash policy", xdsresource.RouteType, action(cluster(&routev3.RouteAction{HashPolicy: []*routev3.RouteAction_HashPolicy{{}}})), `route.hash_policy[0]: needs one of`},
		{"unnamed header hash", xdsresource.RouteType, action(cluster(&routev3.RouteAction{HashPolicy: []*routev3.RouteAction_HashPolicy{
			{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{}}}}})), `route.hash_policy[0]: needs a name`},
		{"source ip false", xdsresource.RouteType, action(cluster(&routev3.RouteAction{HashPolicy: []*routev3.RouteAction_HashPolicy{
			{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{}}}}})),
			`hash_policy[0].connection_properties.source_ip`},
		{"redirect regex", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_RegexRewrite{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{}}}}}), `redirect.regex_rewrite.pattern: required`},
		{"redirect code", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{ResponseCode: 9}}}),
			`redirect.response_code: unknown response code 9`},
		{"redirect strip query", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{StripQuery: true}}}),
			`redirect.strip_query: not supported`},
		{"direct status", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 42}}}),
			`direct_response.status: 42 is not an HTTP status`},
		{"direct body file", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/passwd"}}}}}), `direct_response.body.filename: not supported`},
		{"header append action", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/"), Action: toCluster("c"), ResponseHeadersToAdd: []*corev3.HeaderValueOption{
			{Header: &corev3.HeaderValue{Key: "a"}}, {Header: &corev3.HeaderValue{Key: "b"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT}}}),
			`routes[0].response_headers_to_add[1].append_action: append action 1 is not supported`},
		{"header without key", xdsresource.RouteType, route(&routev3.Route{Match: prefix("/"), Action: toCluster("c"), RequestHeadersToAdd: []*corev3.HeaderValueOption{{}}}),
			`request_headers_to_add[0].header.key: required`},
		{"duplicate domain", xdsresource.RouteType, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
			{Name: "a", Domains: []string{"x", "y"}}, {Name: "b", Domains: []string{"Y"}}}}, `virtual_hosts[1].domains[0]: domain "Y" is also in virtual_hosts[0]`},
		{"bad wildcard", xdsresource.RouteType, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"a.*.b"}}}},
			`virtual_hosts[0].domains[0]: invalid domain "a.*.b"`},
		{"no domains", xdsresource.RouteType, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "a"}}}, `virtual_hosts[0].domains: required`},
		{"require tls", xdsresource.RouteType, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"*"}, RequireTls: routev3.VirtualHost_ALL}}},
			`virtual_hosts[0].require_tls: not supported`},
		{"vhds", xdsresource.RouteType, &routev3.RouteConfiguration{Vhds: &routev3.Vhds{}}, `vhds: not supported`},

		// Listeners.
		{"no address", xdsresource.ListenerType, &listenerv3.Listener{Name: "l"}, `address: required`},
		{"pipe address", xdsresource.ListenerType, &listenerv3.Listener{Name: "l", Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/p"}}}},
			`address.pipe: not supported`},
		{"named port", xdsresource.ListenerType, &listenerv3.Listener{Name: "l", Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "http"}}}}}, `address.socket_address.named_port: not supported`},
		{"udp", xdsresource.ListenerType, &listenerv3.Listener{Name: "l", Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol: corev3.SocketAddress_UDP, Address: "0.0.0.0"}}}}, `address.socket_address.protocol: only TCP`},
		{"port range", xdsresource.ListenerType, &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 70000)}, `address.socket_address.port_value: port 70000 out of range`},
		{"direction", xdsresource.ListenerType, &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1), TrafficDirection: 7}, `traffic_direction: unknown traffic direction 7`},
		{"api listener", xdsresource.ListenerType, &listenerv3.Listener{Name: "l", ApiListener: &listenerv3.ApiListener{}}, `api_listener: not supported`},
		{"server name *", xdsresource.ListenerType, listener(&listenerv3.FilterChain{FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{"a", "*"}},
			Filters: []*listenerv3.Filter{tcpFilter(t, "c")}}), `filter_chains[0].filter_chain_match.server_names[1]: "*" is not a server name`},
		{"tls chain", xdsresource.ListenerType, listener(&listenerv3.FilterChain{TransportSocket: &corev3.TransportSocket{Name: "tls"},
			Filters: []*listenerv3.Filter{tcpFilter(t, "c")}}), `filter_chains[0].transport_socket.name: transport socket "tls": not supported`},
		{"no filters", xdsresource.ListenerType, listener(&listenerv3.FilterChain{}), `filter_chains[0].filters: needs an http_connection_manager or tcp_proxy filter`},
		{"filter without config", xdsresource.ListenerType, listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{{Name: "x"}}}),
			`filter_chains[0].filters[0].typed_config: filter "x" has no typed_config`},
		{"unknown network filter", xdsresource.ListenerType, listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{{Name: "rbac",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}}}),
			`filters[0].typed_config: filter "rbac": unsupported type envoy.extensions.filters.http.router.v3.Router`},
		{"two terminal filters", xdsresource.ListenerType, listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpFilter(t, "a"), tcpFilter(t, "b")}}),
			`filters[1]: filter "tcp" follows the chain's terminal filter`},
		{"tcp without cluster", xdsresource.ListenerType, listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpFilter(t, "")}}),
			`filters[0].typed_config.cluster: required`},
		{"tcp weighted", xdsresource.ListenerType, listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{{Name: "tcp",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &tcpproxyv3.TcpProxy{ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{}})}}}}),
			`filters[0].typed_config.weighted_clusters.clusters: required`},
		{"http filter", xdsresource.ListenerType, hcm(&hcmv3.HttpConnectionManager{HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &tcpproxyv3.TcpProxy{})}}, router(t)}}),
			`filters[0].typed_config.http_filters[0]: HTTP filter "envoy.filters.http.fault" (envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy) is not supported`},
		{"untyped http filter", xdsresource.ListenerType, hcm(&hcmv3.HttpConnectionManager{HttpFilters: []*hcmv3.HttpFilter{{Name: "lua"}}}),
			`http_filters[0]: HTTP filter "lua" is not supported`},
		{"scoped routes", xdsresource.ListenerType, hcm(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_ScopedRoutes{ScopedRoutes: &hcmv3.ScopedRoutes{}}}),
			`typed_config.scoped_routes: not supported`},
		{"rds without name", xdsresource.ListenerType, hcm(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{}}}),
			`typed_config.rds.route_config_name: required`},
		{"bad inline route", xdsresource.ListenerType, hcm(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{
			RouteConfig: rcWith(&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: safeRegex(")")}}, Action: toCluster("c")})}}),
			`filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].match.safe_regex: invalid regex ")"`},
		{"no route specifier", xdsresource.ListenerType, listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{hcmFilter(t, &hcmv3.HttpConnectionManager{})}}),
			`filters[0].typed_config: needs rds or route_config`},

		// Clusters.
		{"cluster type", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: 9}}, `type: unknown cluster type 9`},
		{"custom cluster type", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{}}},
			`cluster_type: not supported`},
		{"lb policy", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", LbPolicy: clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG}, `lb_policy: unknown or unsupported load balancing policy 7`},
		{"original dst needs cluster provided", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}},
			`lb_policy: ORIGINAL_DST clusters need CLUSTER_PROVIDED`},
		{"cluster provided for eds", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED}, `lb_policy: CLUSTER_PROVIDED is only for ORIGINAL_DST`},
		{"upstream tls", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", TransportSocket: &corev3.TransportSocket{Name: "tls"}}, `transport_socket.name: transport socket "tls": not supported`},
		{"subsets", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", LbSubsetConfig: &clusterv3.Cluster_LbSubsetConfig{}}, `lb_subset_config: not supported`},
		{"negative connect timeout", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", ConnectTimeout: &durationpb.Duration{Nanos: -1}}, `connect_timeout: must not be negative`},
		{"http3", xdsresource.ClusterType, protoOpts(&upstreamhttp.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http3ProtocolOptions{}}}}),
			`typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].value.explicit_http_config.http3_protocol_options: not supported`},
		{"auto http", xdsresource.ClusterType, protoOpts(&upstreamhttp.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_AutoConfig{}}),
			`.value.auto_config: not supported`},
		{"protocol options type", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &routerv3.Router{})}}, `HttpProtocolOptions"].type_url: unexpected type`},
		{"unknown lb metadata", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", LbPolicy: clusterv3.Cluster_LEAST_REQUEST, Metadata: lbMetadata("EWMA")},
			`metadata.filter_metadata["trellis"].fields["lb"]: unknown load balancer "EWMA": want PEAK_EWMA`},
		{"peak ewma needs least request", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", LbPolicy: clusterv3.Cluster_ROUND_ROBIN, Metadata: lbMetadata("PEAK_EWMA")},
			`metadata.filter_metadata["trellis"].fields["lb"]: PEAK_EWMA needs lb_policy LEAST_REQUEST`},
		{"bad static endpoints", xdsresource.ClusterType, &clusterv3.Cluster{Name: "c", LoadAssignment: &endpointv3.ClusterLoadAssignment{
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{}}}}}}, `load_assignment.endpoints[0].lb_endpoints[0].endpoint: required`},

		// ClusterLoadAssignments.
		{"endpoint weight 0", xdsresource.EndpointType, cla(withEndpoint(&endpointv3.LbEndpoint{LoadBalancingWeight: wrapperspb.UInt32(0)})),
			`endpoints[1].lb_endpoints[0].load_balancing_weight: must be >= 1`},
		{"health status", xdsresource.EndpointType, cla(withEndpoint(&endpointv3.LbEndpoint{HealthStatus: 17})), `lb_endpoints[0].health_status: unknown health status 17`},
		{"named endpoint", xdsresource.EndpointType, cla(&endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_EndpointName{EndpointName: "x"}}),
			`lb_endpoints[0].endpoint_name: not supported`},
		{"endpoint without address", xdsresource.EndpointType, cla(&endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{}}}),
			`lb_endpoints[0].endpoint.address: required`},
		{"endpoint empty ip", xdsresource.EndpointType, cla(&endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr("", 1)}}}),
			`lb_endpoints[0].endpoint.address.socket_address.address: required`},
		{"leds", xdsresource.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbConfig: &endpointv3.LocalityLbEndpoints_LedsClusterLocalityConfig{LedsClusterLocalityConfig: &endpointv3.LedsClusterLocalityConfig{}}}}},
			`endpoints[0].leds_cluster_locality_config: not supported`},
		{"unnamed cla", xdsresource.EndpointType, &endpointv3.ClusterLoadAssignment{}, `cluster_name: required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := marshal(t, tc.in)
			_, res, err := decode(tc.typeURL, b)
			if err == nil {
				t.Fatalf("no error; decoded %+v", res)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\ndoes not contain %q", err, tc.want)
			}
			var xe *xdsresource.Error
			if !errors.As(err, &xe) {
				t.Fatalf("error %T is not an *xdsresource.Error", err)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	good := marshal(t, &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1)})
	for name, b := range map[string][]byte{
		"truncated":        good[:len(good)-1],
		"bad tag":          {0xff},
		"invalid utf-8":    protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff}), // every name is field 1
		"field number 0":   {0x02, 0x00},
		"overlong varint":  {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"unterminated grp": {0x0b},
	} {
		t.Run(name, func(t *testing.T) {
			for _, typ := range []string{xdsresource.ListenerType, xdsresource.RouteType, xdsresource.ClusterType, xdsresource.EndpointType} {
				if _, _, err := decode(typ, b); err == nil || !strings.Contains(err.Error(), "malformed") {
					t.Errorf("%s: err = %v, want malformed", typ, err)
				}
			}
		})
	}
	if _, _, err := decode("type.googleapis.com/envoy.config.core.v3.Secret", good); err == nil {
		t.Error("unknown type URL decoded")
	}
}

func TestDecodeNamesRejectedResource(t *testing.T) {
	b := marshal(t, &clusterv3.Cluster{Name: "outbound|80||a", TransportSocket: &corev3.TransportSocket{}})
	name, res, err := decode(xdsresource.ClusterType, b)
	if err == nil || res != nil || name != "outbound|80||a" {
		t.Fatalf("Decode = %q, %v, %v; want the name, no resource and an error", name, res, err)
	}
}

// TestWrongWireTypeIsUnknown: a known field with an unexpected wire type is
// an unknown field to the protobuf runtime, and so to the decoder.
func TestWrongWireTypeIsUnknown(t *testing.T) {
	b := marshal(t, &clusterv3.Cluster{Name: "c", ConnectTimeout: durationpb.New(time.Second)})
	b = protowire.AppendVarint(protowire.AppendTag(b, 4, protowire.VarintType), 7)   // connect_timeout as a varint
	b = protowire.AppendFixed32(protowire.AppendTag(b, 1, protowire.Fixed32Type), 7) // name as a fixed32
	var ref clusterv3.Cluster
	if err := proto.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	got, err := xdsresource.DecodeCluster(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != ref.Name || got.ConnectTimeout != ref.ConnectTimeout.AsDuration() {
		t.Fatalf("got name %q, timeout %v; protobuf says %q, %v", got.Name, got.ConnectTimeout, ref.Name, ref.ConnectTimeout.AsDuration())
	}
}

// lbMetadata is a cluster's filter_metadata.trellis.lb.
func lbMetadata(v string) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": {Fields: map[string]*structpb.Value{"lb": structpb.NewStringValue(v)}}}}
}

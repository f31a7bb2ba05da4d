package xdsresource_test

import (
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/translate"
)

// cmpRegexp compares compiled regexps by their source.
var cmpRegexp = cmp.Comparer(func(a, b *regexp.Regexp) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
})

// cmpPrefix compares netip.Prefix values, whose fields are unexported.
var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func world(t testing.TB, extra ...string) *translate.World {
	t.Helper()
	files, err := config.Load([]string{"../../translate/testdata/mesh"}, false)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(slog.New(slog.DiscardHandler))
	for _, f := range files {
		if len(f.Errors) > 0 {
			t.Fatalf("test config invalid: %v", f.Errors)
		}
		st.ApplyFile(f)
	}
	for i, y := range extra {
		f := config.ParseFile("extra"+string(rune('a'+i))+".yaml", []byte(y))
		if len(f.Errors) > 0 {
			t.Fatalf("extra config invalid: %v", f.Errors)
		}
		st.ApplyFile(f)
	}
	return translate.NewWorld(st.Snapshot())
}

var sidecarProxy = &translate.Proxy{
	ID: "sidecar~127.10.0.11~reviews-v1-0.default~default.svc.cluster.local", IP: "127.10.0.11",
	Pod: "reviews-v1-0", Namespace: "default", Labels: map[string]string{"app": "reviews", "version": "v1"},
	InterceptionMode: "NONE",
}

// extraConfig exercises what the seed mesh does not: redirects, direct
// responses, rewrites, regex and query matches, every hash policy and
// load balancer, connection pool limits.
var extraConfig = []string{`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-extra}
spec:
  hosts: [reviews-v2]
  http:
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: example.com, redirectCode: 308, scheme: https, port: 8443}
  - name: teapot
    match: [{uri: {prefix: /tea}, ignoreUriCase: true}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - name: regex
    match:
    - uri: {regex: "/api/v[0-9]+/.*"}
      method: {exact: GET}
      queryParams: {debug: {exact: "1"}, trace: {regex: "[a-z]+"}}
      withoutHeaders: {x-skip: {prefix: "y"}}
    rewrite: {uriRegexRewrite: {match: "^/api/v[0-9]+/(.*)", rewrite: "/\\1"}, authority: internal}
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {remove: [server]}
    route:
    - destination: {host: reviews-v2}
  - name: retried
    match: [{uri: {prefix: /retried}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset,connect-failure,409,retriable-4xx", retryRemoteLocalities: true, backoff: 10ms}
    route:
    - destination: {host: reviews-v1}
  - name: not-retried
    match: [{uri: {prefix: /once}}]
    retries: {attempts: 0}
    route:
    - destination: {host: reviews-v1}
  - name: prefix
    match: [{uri: {prefix: /p}}]
    rewrite: {uri: /q}
    route:
    - destination: {host: reviews-v2}
      weight: 70
      headers: {request: {set: {x-split: a}}}
    - destination: {host: reviews-v1}
      weight: 30
`, `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-v2}
spec:
  host: reviews-v2
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: session, path: /, ttl: 60s}, ringHash: {minimumRingSize: 1024}}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 200, maxRetries: 3, maxRequestsPerConnection: 5, idleTimeout: 30s}
`, `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-v1}
spec:
  host: reviews-v1
  trafficPolicy:
    loadBalancer:
      consistentHash: {maglev: {tableSize: 65537}, useSourceIp: true}
    retryBudget: {percent: 25, minRetryConcurrency: 2}
`}

// TestTranslatorOutput decodes every resource Trellis's translator makes
// for a sidecar and compares it with what the go-control-plane message
// says, field by field.
func TestTranslatorOutput(t *testing.T) {
	for name, w := range map[string]*translate.World{"seed": world(t), "extra": world(t, extraConfig...)} {
		t.Run(name, func(t *testing.T) {
			res := translate.ForProxy(w, sidecarProxy, nil)
			if len(res.Listeners) == 0 || len(res.Routes) == 0 || len(res.Clusters) == 0 || len(res.Endpoints) == 0 {
				t.Fatalf("translator produced too little: %d listeners, %d routes, %d clusters, %d endpoints",
					len(res.Listeners), len(res.Routes), len(res.Clusters), len(res.Endpoints))
			}
			for _, l := range res.Listeners {
				check(t, xdsresource.ListenerType, l, l.Name, wantListener(t, l))
			}
			for _, r := range res.Routes {
				check(t, xdsresource.RouteType, r, r.Name, wantRoute(t, r))
			}
			for _, c := range res.Clusters {
				check(t, xdsresource.ClusterType, c, c.Name, wantCluster(t, c))
			}
			for _, e := range res.Endpoints {
				check(t, xdsresource.EndpointType, e, e.ClusterName, wantCLA(e))
			}
		})
	}
}

// TestProxylessOutput: a proxyless gRPC client's routes, clusters and
// endpoints are ordinary xDS the sidecar could serve; its api_listeners are
// not, and say so.
func TestProxylessOutput(t *testing.T) {
	grpcProxy := &translate.Proxy{ID: "sidecar~127.10.0.30~client-0.default~default.svc.cluster.local", IP: "127.10.0.30",
		Pod: "client-0", Namespace: "default", Generator: translate.GeneratorGRPC}
	res := translate.ForProxy(world(t, extraConfig...), grpcProxy, nil)
	for _, r := range res.Routes {
		check(t, xdsresource.RouteType, r, r.Name, wantRoute(t, r))
	}
	for _, c := range res.Clusters {
		check(t, xdsresource.ClusterType, c, c.Name, wantCluster(t, c))
	}
	for _, e := range res.Endpoints {
		check(t, xdsresource.EndpointType, e, e.ClusterName, wantCLA(e))
	}
	if len(res.Listeners) == 0 {
		t.Fatal("no listeners")
	}
	for _, l := range res.Listeners {
		name, _, err := decode(xdsresource.ListenerType, marshal(t, l))
		if name != l.Name || err == nil || err.Error() != "api_listener: not supported by trellis-proxy" {
			t.Errorf("listener %q: Decode = %q, %v; want its name and an api_listener error", l.Name, name, err)
		}
	}
}

func check(t *testing.T, typeURL string, m proto.Message, wantName string, want any) {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	name, got, err := decode(typeURL, b)
	if err != nil {
		t.Errorf("%s %q: %v", typeURL, wantName, err)
		return
	}
	if name != wantName {
		t.Errorf("name = %q, want %q", name, wantName)
	}
	if d := cmp.Diff(want, got, cmpRegexp, cmpPrefix); d != "" {
		t.Errorf("%s %q (-want +got):\n%s", typeURL, wantName, d)
	}
}

// The want* functions are the test's oracle: the same mapping as the
// decoder, written against go-control-plane's generated types.

func wantListener(t *testing.T, l *listenerv3.Listener) *xdsresource.Listener {
	sa := l.GetAddress().GetSocketAddress()
	out := &xdsresource.Listener{
		Name: l.Name, Address: sa.GetAddress(), Port: sa.GetPortValue(),
		BindToPort: l.BindToPort == nil || l.BindToPort.Value, UseOriginalDst: l.GetUseOriginalDst().GetValue(),
		Direction: xdsresource.Direction(l.TrafficDirection),
		Host:      l.GetMetadata().GetFilterMetadata()["trellis"].GetFields()["host"].GetStringValue(),
	}
	for _, fc := range l.FilterChains {
		c := xdsresource.FilterChain{Name: fc.Name, DestinationPort: fc.GetFilterChainMatch().GetDestinationPort().GetValue(),
			ServerNames: fc.GetFilterChainMatch().GetServerNames()}
		for _, pr := range fc.GetFilterChainMatch().GetPrefixRanges() {
			c.PrefixRanges = append(c.PrefixRanges, netip.PrefixFrom(netip.MustParseAddr(pr.GetAddressPrefix()), int(pr.GetPrefixLen().GetValue())).Masked())
		}
		var stats *xdsresource.Stats // an istio.stats network filter's, for the TCP proxy
		for _, f := range fc.Filters {
			msg, err := f.GetTypedConfig().UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			switch x := msg.(type) {
			case *hcmv3.HttpConnectionManager:
				h := &xdsresource.HTTPConnectionManager{StatPrefix: x.StatPrefix, RDSName: x.GetRds().GetRouteConfigName(),
					Paths: xdsresource.PathNormalization{Normalize: x.GetNormalizePath().GetValue(), MergeSlashes: x.MergeSlashes,
						EscapedSlashes: xdsresource.EscapedSlashesAction(x.PathWithEscapedSlashesAction)}}
				if x.GetRouteConfig() != nil {
					h.RouteConfig = wantRoute(t, x.GetRouteConfig())
				}
				wantHCMTelemetry(t, x, h) // telemetry_test.go
				c.HTTP = h
			case *tcpproxyv3.TcpProxy:
				c.TCP = &xdsresource.TCPProxy{StatPrefix: x.StatPrefix, Cluster: x.GetCluster()}
				for _, cw := range x.GetWeightedClusters().GetClusters() {
					c.TCP.WeightedClusters = append(c.TCP.WeightedClusters, xdsresource.ClusterWeight{Name: cw.Name, Weight: cw.Weight})
					c.TCP.TotalWeight += uint64(cw.Weight)
				}
				c.TCP.AccessLogs, c.TCP.Stats = wantAccessLogs(t, x.AccessLog), stats
			case *xdstypev3.TypedStruct:
				stats = wantStats(t, x)
			default:
				t.Fatalf("unexpected filter %T", x)
			}
		}
		out.FilterChains = append(out.FilterChains, c)
	}
	return out
}

func wantRoute(t *testing.T, rc *routev3.RouteConfiguration) *xdsresource.RouteConfig {
	out := &xdsresource.RouteConfig{Name: rc.Name}
	for _, vh := range rc.VirtualHosts {
		v := xdsresource.VirtualHost{Name: vh.Name, Domains: vh.Domains}
		for _, r := range vh.Routes {
			v.Routes = append(v.Routes, wantRouteEntry(t, r))
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out
}

func anchored(s string) *regexp.Regexp { return regexp.MustCompile("^(?:" + s + ")$") }

func wantStringMatcher(sm *matcherv3.StringMatcher) xdsresource.StringMatcher {
	out := xdsresource.StringMatcher{IgnoreCase: sm.IgnoreCase}
	switch p := sm.MatchPattern.(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Kind, out.Value = xdsresource.StringExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Kind, out.Value = xdsresource.StringPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Kind, out.Value = xdsresource.StringSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Kind, out.Value = xdsresource.StringContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		out.Kind, out.Value, out.Regex = xdsresource.StringRegex, p.SafeRegex.Regex, anchored(p.SafeRegex.Regex)
	}
	return out
}

func wantHeaders(hs []*corev3.HeaderValueOption) []xdsresource.HeaderValueOption {
	var out []xdsresource.HeaderValueOption
	for _, h := range hs {
		out = append(out, xdsresource.HeaderValueOption{Name: h.Header.Key, Value: h.Header.Value,
			Append: h.AppendAction == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	return out
}

func wantRouteEntry(t *testing.T, r *routev3.Route) xdsresource.Route {
	out := xdsresource.Route{
		Name:                    r.Name,
		RequestHeadersToAdd:     wantHeaders(r.RequestHeadersToAdd),
		RequestHeadersToRemove:  r.RequestHeadersToRemove,
		ResponseHeadersToAdd:    wantHeaders(r.ResponseHeadersToAdd),
		ResponseHeadersToRemove: r.ResponseHeadersToRemove,
	}
	m := r.Match
	switch p := m.PathSpecifier.(type) {
	case *routev3.RouteMatch_Prefix:
		out.Match.PathKind, out.Match.Path = xdsresource.PathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		out.Match.PathKind, out.Match.Path = xdsresource.PathExact, p.Path
	case *routev3.RouteMatch_SafeRegex:
		out.Match.PathKind, out.Match.Path, out.Match.PathRegex = xdsresource.PathRegex, p.SafeRegex.Regex, anchored(p.SafeRegex.Regex)
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.Match.PathKind, out.Match.Path = xdsresource.PathSeparatedPrefix, p.PathSeparatedPrefix
	default:
		t.Fatalf("unexpected path specifier %T", p)
	}
	out.Match.CaseInsensitive = m.CaseSensitive != nil && !m.CaseSensitive.Value
	for _, h := range m.Headers {
		hm := xdsresource.HeaderMatcher{Name: h.Name, Invert: h.InvertMatch, MissingAsEmpty: h.TreatMissingHeaderAsEmpty}
		switch s := h.HeaderMatchSpecifier.(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			hm.Present = true
		case *routev3.HeaderMatcher_StringMatch:
			hm.Match = wantStringMatcher(s.StringMatch)
		default:
			t.Fatalf("unexpected header matcher %T", s)
		}
		out.Match.Headers = append(out.Match.Headers, hm)
	}
	for _, q := range m.QueryParameters {
		qm := xdsresource.QueryParamMatcher{Name: q.Name, Present: q.GetPresentMatch()}
		if q.GetStringMatch() != nil {
			qm.Match = wantStringMatcher(q.GetStringMatch())
		}
		out.Match.QueryParams = append(out.Match.QueryParams, qm)
	}
	switch a := r.Action.(type) {
	case *routev3.Route_Route:
		ra := a.Route
		act := &xdsresource.RouteAction{Timeout: 15 * time.Second, PrefixRewrite: ra.PrefixRewrite, HostRewrite: ra.GetHostRewriteLiteral()}
		if ra.Timeout != nil {
			act.Timeout = ra.Timeout.AsDuration()
		}
		if rr := ra.RegexRewrite; rr != nil {
			act.RegexRewrite = regexp.MustCompile(rr.Pattern.Regex)
			act.RegexSubstitution = strings.ReplaceAll(rr.Substitution, `\1`, "${1}")
		}
		if c := ra.GetCluster(); c != "" {
			act.Clusters, act.TotalWeight = []xdsresource.WeightedCluster{{Name: c, Weight: 1}}, 1
		}
		for _, c := range ra.GetWeightedClusters().GetClusters() {
			act.Clusters = append(act.Clusters, xdsresource.WeightedCluster{
				Name: c.Name, Weight: c.Weight.GetValue(),
				RequestHeadersToAdd: wantHeaders(c.RequestHeadersToAdd), RequestHeadersToRemove: c.RequestHeadersToRemove,
				ResponseHeadersToAdd: wantHeaders(c.ResponseHeadersToAdd), ResponseHeadersToRemove: c.ResponseHeadersToRemove,
			})
			act.TotalWeight += uint64(c.Weight.GetValue())
		}
		for _, h := range ra.HashPolicy {
			switch p := h.PolicySpecifier.(type) {
			case *routev3.RouteAction_HashPolicy_Header_:
				act.HashPolicies = append(act.HashPolicies, xdsresource.HashPolicy{Kind: xdsresource.HashHeader, Name: p.Header.HeaderName})
			case *routev3.RouteAction_HashPolicy_Cookie_:
				act.HashPolicies = append(act.HashPolicies, xdsresource.HashPolicy{Kind: xdsresource.HashCookie, Name: p.Cookie.Name,
					CookieTTL: p.Cookie.GetTtl().AsDuration(), CookiePath: p.Cookie.Path})
			case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
				act.HashPolicies = append(act.HashPolicies, xdsresource.HashPolicy{Kind: xdsresource.HashSourceIP})
			case *routev3.RouteAction_HashPolicy_QueryParameter_:
				act.HashPolicies = append(act.HashPolicies, xdsresource.HashPolicy{Kind: xdsresource.HashQueryParam, Name: p.QueryParameter.Name})
			}
		}
		act.Retry = wantRetry(ra.GetRetryPolicy())
		out.Action = act
	case *routev3.Route_Redirect:
		rd := a.Redirect
		out.Redirect = &xdsresource.Redirect{Scheme: rd.GetSchemeRedirect(), Host: rd.HostRedirect, Port: rd.PortRedirect,
			Path: rd.GetPathRedirect(), Code: []int{301, 302, 303, 307, 308}[rd.ResponseCode]}
	case *routev3.Route_DirectResponse:
		d := &xdsresource.DirectResponse{Status: int(a.DirectResponse.Status)}
		if b := a.DirectResponse.Body; b != nil {
			d.Body = []byte(b.GetInlineString())
			if b.GetInlineBytes() != nil {
				d.Body = b.GetInlineBytes()
			}
		}
		out.Direct = d
	default:
		t.Fatalf("unexpected action %T", a)
	}
	return out
}

// decodedRoutes decodes the translator's route configuration rc, as the
// proxy does, and returns the routes of its virtual host vhost by name.
func decodedRoutes(t *testing.T, res *translate.Resources, rc, vhost string) map[string]xdsresource.Route {
	t.Helper()
	got := map[string]xdsresource.Route{}
	for _, r := range res.Routes {
		if r.Name != rc {
			continue
		}
		_, v, err := decode(xdsresource.RouteType, marshal(t, r))
		if err != nil {
			t.Fatal(err)
		}
		for _, vh := range v.(*xdsresource.RouteConfig).VirtualHosts {
			if vh.Name == vhost {
				for _, rt := range vh.Routes {
					got[rt.Name] = rt
				}
			}
		}
	}
	return got
}

// wantRetry is a RetryPolicy as the proxy should read it, with Envoy's
// defaults for what the message leaves unset.
func wantRetry(rp *routev3.RetryPolicy) *xdsresource.RetryPolicy {
	if rp == nil {
		return nil
	}
	on, _ := xdsresource.ParseRetryOn(rp.GetRetryOn())
	w := &xdsresource.RetryPolicy{
		On: on, NumRetries: 1, PerTryTimeout: rp.GetPerTryTimeout().AsDuration(),
		HostSelectionAttempts: max(int(rp.GetHostSelectionRetryMaxAttempts()), 1),
		PreviousHosts:         len(rp.GetRetryHostPredicate()) > 0,
		PreviousPriorities:    rp.GetRetryPriority() != nil,
		BackoffBase:           xdsresource.DefaultRetryBaseInterval,
	}
	if n := rp.GetNumRetries(); n != nil {
		w.NumRetries = n.GetValue()
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		w.StatusCodes = append(w.StatusCodes, int(c))
	}
	if b := rp.GetRetryBackOff(); b != nil {
		w.BackoffBase = b.GetBaseInterval().AsDuration()
	}
	w.BackoffMax = 10 * w.BackoffBase
	return w
}

func wantCluster(t *testing.T, c *clusterv3.Cluster) *xdsresource.Cluster {
	out := &xdsresource.Cluster{Name: c.Name, ConnectTimeout: c.GetConnectTimeout().AsDuration()}
	out.Type = map[clusterv3.Cluster_DiscoveryType]xdsresource.Discovery{
		clusterv3.Cluster_STATIC: xdsresource.ClusterStatic, clusterv3.Cluster_STRICT_DNS: xdsresource.ClusterStrictDNS,
		clusterv3.Cluster_LOGICAL_DNS: xdsresource.ClusterLogicalDNS, clusterv3.Cluster_EDS: xdsresource.ClusterEDS,
		clusterv3.Cluster_ORIGINAL_DST: xdsresource.ClusterOriginalDst,
	}[c.GetType()]
	out.LBPolicy = map[clusterv3.Cluster_LbPolicy]xdsresource.LBPolicy{
		clusterv3.Cluster_ROUND_ROBIN: xdsresource.LBRoundRobin, clusterv3.Cluster_LEAST_REQUEST: xdsresource.LBLeastRequest,
		clusterv3.Cluster_RANDOM: xdsresource.LBRandom, clusterv3.Cluster_RING_HASH: xdsresource.LBRingHash,
		clusterv3.Cluster_MAGLEV: xdsresource.LBMaglev, clusterv3.Cluster_CLUSTER_PROVIDED: xdsresource.LBClusterProvided,
	}[c.LbPolicy]
	out.PeakEWMA = c.GetMetadata().GetFilterMetadata()["trellis"].GetFields()["lb"].GetStringValue() == "PEAK_EWMA"
	out.RingMinSize = c.GetRingHashLbConfig().GetMinimumRingSize().GetValue()
	out.MaglevTableSize = c.GetMaglevLbConfig().GetTableSize().GetValue()
	if th := c.GetCircuitBreakers().GetThresholds(); len(th) > 0 {
		out.CircuitBreakers = xdsresource.CircuitBreakers{
			MaxConnections: th[0].GetMaxConnections().GetValue(), MaxPendingRequests: th[0].GetMaxPendingRequests().GetValue(),
			MaxRequests: th[0].GetMaxRequests().GetValue(), MaxRetries: th[0].GetMaxRetries().GetValue(),
		}
		if rb := th[0].GetRetryBudget(); rb != nil {
			b := &xdsresource.RetryBudget{Percent: 20, MinConcurrency: 3}
			if p := rb.GetBudgetPercent(); p != nil {
				b.Percent = p.GetValue()
			}
			if n := rb.GetMinRetryConcurrency(); n != nil {
				b.MinConcurrency = n.GetValue()
			}
			out.CircuitBreakers.RetryBudget = b
		}
	}
	if a := c.TypedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a != nil {
		var o upstreamhttp.HttpProtocolOptions
		if err := a.UnmarshalTo(&o); err != nil {
			t.Fatal(err)
		}
		out.HTTP2 = o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
		out.IdleTimeout = o.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration()
		out.MaxRequestsPerConnection = o.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection().GetValue()
	}
	if c.LoadAssignment != nil && c.GetType() != clusterv3.Cluster_EDS {
		out.LoadAssignment = wantCLA(c.LoadAssignment)
	}
	out.TLS, out.TLSMatches = wantClusterTLS(t, c)
	return out
}

func wantCLA(c *endpointv3.ClusterLoadAssignment) *xdsresource.ClusterLoadAssignment {
	out := &xdsresource.ClusterLoadAssignment{ClusterName: c.ClusterName}
	for _, l := range c.Endpoints {
		loc := xdsresource.LocalityEndpoints{Region: l.GetLocality().GetRegion(), Zone: l.GetLocality().GetZone(),
			SubZone: l.GetLocality().GetSubZone(), Weight: l.GetLoadBalancingWeight().GetValue(), Priority: l.Priority}
		for _, e := range l.LbEndpoints {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			md := e.GetMetadata().GetFilterMetadata()["trellis"].GetFields()
			ep := xdsresource.Endpoint{Address: sa.GetAddress(), Port: sa.GetPortValue(), Weight: 1,
				Healthy:  e.HealthStatus == corev3.HealthStatus_HEALTHY || e.HealthStatus == corev3.HealthStatus_UNKNOWN,
				Degraded: e.HealthStatus == corev3.HealthStatus_DEGRADED,
				Workload: md["workload"].GetStringValue(), Namespace: md["namespace"].GetStringValue(), ServiceAccount: md["serviceAccount"].GetStringValue(), Peer: md["peer"].GetStringValue(),
				TLSMode: md["tlsMode"].GetStringValue()}
			if e.LoadBalancingWeight != nil {
				ep.Weight = e.LoadBalancingWeight.Value
			}
			loc.Endpoints = append(loc.Endpoints, ep)
		}
		out.Localities = append(out.Localities, loc)
	}
	return out
}

// TestTranslatorTLSModeLiteral: the seed mesh labels reviews-v2 (and only
// it) security.istio.io/tlsMode: istio; decoded, that endpoint says
// TLSMode "istio" and the others say nothing, although the translator also
// sends Envoy's envoy.transport_socket_match metadata for it.
func TestTranslatorTLSModeLiteral(t *testing.T) {
	res := translate.ForProxy(world(t), sidecarProxy, nil)
	got := map[string]string{}
	for _, e := range res.Endpoints {
		if e.ClusterName != "outbound|9080||reviews.default.svc.cluster.local" {
			continue
		}
		matches := 0
		for _, l := range e.Endpoints {
			for _, ep := range l.LbEndpoints {
				if ep.GetMetadata().GetFilterMetadata()[translate.TransportSocketMatchNamespace] != nil {
					matches++
				}
			}
		}
		if matches != 1 {
			t.Fatalf("want one endpoint with transport socket match metadata, got %d: %v", matches, e)
		}
		_, v, err := decode(xdsresource.EndpointType, marshal(t, e))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range v.(*xdsresource.ClusterLoadAssignment).Localities {
			for _, ep := range l.Endpoints {
				got[ep.Workload] = ep.TLSMode
			}
		}
	}
	if d := cmp.Diff(map[string]string{"reviews-v1": "", "reviews-v2": "istio"}, got); d != "" {
		t.Fatalf("TLSMode by workload (-want +got):\n%s", d)
	}
}

// TestTranslatorPeakEWMALiteral: the seed mesh annotates ratings'
// DestinationRule trellis.io/load-balancer: PEAK_EWMA (and no other);
// decoded, that cluster alone has PeakEWMA set.
func TestTranslatorPeakEWMALiteral(t *testing.T) {
	got := map[string]bool{}
	for _, c := range translate.ForProxy(world(t), sidecarProxy, nil).Clusters {
		_, v, err := decode(xdsresource.ClusterType, marshal(t, c))
		if err != nil {
			t.Fatal(err)
		}
		if xc := v.(*xdsresource.Cluster); xc.PeakEWMA {
			got[xc.Name] = xc.LBPolicy == xdsresource.LBLeastRequest
		}
	}
	if d := cmp.Diff(map[string]bool{"outbound|9080||ratings.default.svc.cluster.local": true}, got); d != "" {
		t.Fatalf("clusters with PeakEWMA, and whether LEAST_REQUEST (-want +got):\n%s", d)
	}
}

// TestTranslatorRouteLiteral pins one translated route against what its
// VirtualService says, independently of the oracle above.
func TestTranslatorRouteLiteral(t *testing.T) {
	res := translate.ForProxy(world(t, extraConfig...), sidecarProxy, nil)
	r, ok := decodedRoutes(t, res, "9080", "reviews-v2.default.svc.cluster.local:9080")["regex"]
	if !ok {
		t.Fatal("no route \"regex\" for reviews-v2 in route configuration 9080")
	}
	got := &r
	want := &xdsresource.Route{
		Name: "regex",
		Match: xdsresource.RouteMatch{
			PathKind: xdsresource.PathRegex, Path: "/api/v[0-9]+/.*", PathRegex: regexp.MustCompile(`^(?:/api/v[0-9]+/.*)$`),
			Headers: []xdsresource.HeaderMatcher{
				{Name: "x-skip", Invert: true, MissingAsEmpty: true, Match: xdsresource.StringMatcher{Kind: xdsresource.StringPrefix, Value: "y"}},
				{Name: ":method", Match: xdsresource.StringMatcher{Kind: xdsresource.StringExact, Value: "GET"}},
			},
			QueryParams: []xdsresource.QueryParamMatcher{
				{Name: "debug", Match: xdsresource.StringMatcher{Kind: xdsresource.StringExact, Value: "1"}},
				{Name: "trace", Match: xdsresource.StringMatcher{Kind: xdsresource.StringRegex, Value: "[a-z]+", Regex: regexp.MustCompile(`^(?:[a-z]+)$`)}},
			},
		},
		Action: &xdsresource.RouteAction{
			Clusters:     []xdsresource.WeightedCluster{{Name: "outbound|9080||reviews-v2.default.svc.cluster.local", Weight: 1}},
			TotalWeight:  1,
			RegexRewrite: regexp.MustCompile(`^/api/v[0-9]+/(.*)`), RegexSubstitution: "/${1}",
			HostRewrite:  "internal",
			HashPolicies: []xdsresource.HashPolicy{{Kind: xdsresource.HashCookie, Name: "session", CookieTTL: time.Minute, CookiePath: "/"}},
			// Istio's default policy, without previous_hosts: the route hashes.
			Retry: &xdsresource.RetryPolicy{
				On:         xdsresource.RetryConnectFailure | xdsresource.RetryRefusedStream | xdsresource.RetryGRPCUnavailable | xdsresource.RetryGRPCCancelled | xdsresource.RetryRetriableStatusCodes,
				NumRetries: 2, HostSelectionAttempts: 5, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond,
			},
		},
		RequestHeadersToAdd:     []xdsresource.HeaderValueOption{{Name: "x-a", Value: "1"}, {Name: "x-b", Value: "2", Append: true}},
		RequestHeadersToRemove:  []string{"x-c"},
		ResponseHeadersToRemove: []string{"server"},
	}
	if d := cmp.Diff(want, got, cmpRegexp, cmpPrefix); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	if s := got.Action.RegexRewrite.ReplaceAllString("/api/v2/books/1", got.Action.RegexSubstitution); s != "/books/1" {
		t.Errorf("rewritten path = %q, want /books/1", s)
	}
}

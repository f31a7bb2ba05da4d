package translate_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/translate"
)

// Each test here checks the translation of one piece of Istio config
// against what istio.io's reference for that kind documents (quoted in
// the test's comment), expressed as the Envoy configuration that carries
// that meaning.

// bareWorld is testdata/mesh's Services and workloads with no routing or
// policy, plus extra.
func bareWorld(t *testing.T, extra ...string) *translate.World {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"services.yaml", "workloads.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata/mesh", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return world(t, dir, extra...)
}

// ratingsRoutes are the routes of ratings:9080 as the reviews-v1 sidecar
// sees them.
func ratingsRoutesFor(t *testing.T, w *translate.World, p *translate.Proxy) []*routev3.Route {
	t.Helper()
	r := translate.ForProxy(w, p, nil)
	return vhost(t, findRoute(t, r, "9080"), "ratings.default.svc.cluster.local:9080").Routes
}

const ratingsCluster = "outbound|9080||ratings.default.svc.cluster.local"

// HTTPRouteDestination.weight: "Weight specifies the relative proportion
// of traffic to be forwarded to the destination ... If there is only one
// destination in a rule, it will receive all traffic." A zero weight among
// several receives nothing (Istio drops it from the weighted clusters).
func TestIstioWeights(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /one}}]
    route:
    - destination: {host: ratings}
      weight: 30
  - match: [{uri: {prefix: /relative}}]
    route:
    - destination: {host: ratings}
      weight: 1
    - destination: {host: reviews}
      weight: 3
  - route:
    - destination: {host: ratings}
      weight: 100
    - destination: {host: reviews}
      weight: 0
`)
	routes := ratingsRoutesFor(t, w, sidecarProxy)
	got := [][]wc{weights(routes[0]), weights(routes[1]), weights(routes[2])}
	want := [][]wc{
		{{ratingsCluster, 1}},
		{{ratingsCluster, 1}, {"outbound|9080||reviews.default.svc.cluster.local", 3}},
		// Only one destination is left: it takes everything.
		{{ratingsCluster, 1}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("weighted clusters (-want +got):\n%s", d)
	}
}

// HTTPMatchRequest: "All conditions inside a single match block have AND
// semantics, while the list of match blocks have OR semantics", and rules
// are "matched in order". uri/headers/queryParams take exact, prefix or
// regex; a header given as {} checks presence; method, authority and
// scheme are matched as Envoy sees them (:method, :authority, :scheme);
// ignoreUriCase makes exact and prefix uri matches case-insensitive;
// withoutHeaders "has the same syntax with the header, but has opposite
// meaning".
func TestIstioMatchTranslation(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - name: first
    match:
    - uri: {exact: /exact}
      ignoreUriCase: true
      headers:
        x-a: {exact: "1"}
        x-b: {prefix: pre}
        x-c: {regex: "v[0-9]+"}
        x-d: {}
      withoutHeaders:
        x-e: {}
      method: {exact: GET}
      authority: {prefix: ratings}
      scheme: {exact: http}
    - uri: {regex: "/r/[a-z]+"}
      queryParams:
        q: {exact: "yes"}
        r: {regex: "[0-9]+"}
    route: [{destination: {host: ratings}}]
  - name: second
    match: [{uri: {prefix: /p}}]
    route: [{destination: {host: ratings}}]
`)
	routes := ratingsRoutesFor(t, w, sidecarProxy)
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	prefix := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
	}
	regex := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
	}
	hdr := func(name string, sm *matcherv3.StringMatcher) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
	}
	present := &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	want := []*routev3.RouteMatch{
		{
			PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"},
			CaseSensitive: wrapperspb.Bool(false),
			Headers: []*routev3.HeaderMatcher{
				hdr("x-a", exact("1")),
				hdr("x-b", prefix("pre")),
				hdr("x-c", regex("v[0-9]+")),
				{Name: "x-d", HeaderMatchSpecifier: present},
				{Name: "x-e", HeaderMatchSpecifier: present, InvertMatch: true},
				hdr(":method", exact("GET")),
				hdr(":authority", prefix("ratings")),
				hdr(":scheme", exact("http")),
			},
		},
		{
			PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/r/[a-z]+"}},
			QueryParameters: []*routev3.QueryParameterMatcher{
				{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: exact("yes")}},
				{Name: "r", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: regex("[0-9]+")}},
			},
		},
		{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/p"}},
		// No VirtualService rule matched: Envoy's default route is not
		// added, as Istio adds none (the request gets a 404).
	}
	var got []*routev3.RouteMatch
	var names []string
	for _, r := range routes {
		got = append(got, r.GetMatch())
		names = append(names, r.GetName())
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("route matches (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"first", "first", "second"}, names); d != "" {
		t.Errorf("route names, in order (-want +got):\n%s", d)
	}
}

// HTTPRewrite.uri: "rewrite the path (or the prefix) portion of the URI
// with this value. If the original URI was matched based on prefix, the
// value provided in this field will replace the corresponding matched
// prefix." uriRegexRewrite rewrites with a regex and substitution;
// authority "rewrite[s] the Authority/Host header with this value".
func TestIstioRewrite(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {exact: /page}}]
    rewrite: {uri: /other, authority: backend.example.com}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /v1}}]
    rewrite: {uriRegexRewrite: {match: "^/v1/(.*)$", rewrite: '/v2/\1'}}
    route: [{destination: {host: ratings}}]
  - rewrite: {uri: /all}
    route: [{destination: {host: ratings}}]
`)
	routes := ratingsRoutesFor(t, w, sidecarProxy)
	type rw struct {
		Prefix, Pattern, Substitution, Host string
	}
	var got []rw
	for _, r := range routes {
		a := r.GetRoute()
		got = append(got, rw{a.GetPrefixRewrite(), a.GetRegexRewrite().GetPattern().GetRegex(), a.GetRegexRewrite().GetSubstitution(), a.GetHostRewriteLiteral()})
	}
	want := []rw{
		{Prefix: "/new"},
		// The whole path is replaced when the match was not a prefix.
		{Pattern: "^/.*", Substitution: "/other", Host: "backend.example.com"},
		{Pattern: "^/v1/(.*)$", Substitution: `/v2/\1`},
		// No uri match: the path, not a "/" prefix, is rewritten.
		{Pattern: "^/.*", Substitution: "/all"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rewrites (-want +got):\n%s", d)
	}
}

// HTTPRedirect: uri "overwrite[s] the Path portion of the URL",
// prefixRewrite "replace[s] the matched prefix", authority "overwrite[s]
// the Authority/Host portion", scheme and port overwrite theirs,
// derivePort FROM_REQUEST_PORT keeps the request's port, redirectCode
// defaults to 301 ("Moved Permanently").
func TestIstioRedirect(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {exact: /a}}]
    redirect: {uri: /b, authority: new.example.com}
  - match: [{uri: {prefix: /old}}]
    redirect: {prefixRewrite: /new, redirectCode: 302}
  - match: [{uri: {prefix: /tls}}]
    redirect: {scheme: https, port: 8443, redirectCode: 308}
  - redirect: {derivePort: FROM_REQUEST_PORT, redirectCode: 307, authority: x.example.com}
`)
	routes := ratingsRoutesFor(t, w, sidecarProxy)
	var got []*routev3.RedirectAction
	for _, r := range routes {
		got = append(got, r.GetRedirect())
	}
	want := []*routev3.RedirectAction{
		{PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/b"}, HostRedirect: "new.example.com"},
		{PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new"}, ResponseCode: routev3.RedirectAction_FOUND},
		{SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"}, PortRedirect: 8443, ResponseCode: routev3.RedirectAction_PERMANENT_REDIRECT},
		{HostRedirect: "x.example.com", PortRedirect: 9080, ResponseCode: routev3.RedirectAction_TEMPORARY_REDIRECT},
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("redirects (-want +got):\n%s", d)
	}
}

// HTTPDirectResponse: "A HTTPDirectResponse can be used to send a fixed
// response to clients", with status and an optional body (string or
// bytes).
func TestIstioDirectResponse(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /gone}}]
    directResponse: {status: 410, body: {string: "gone"}}
  - directResponse: {status: 503}
`)
	routes := ratingsRoutesFor(t, w, sidecarProxy)
	type dr struct {
		Status uint32
		Body   string
	}
	var got []dr
	for _, r := range routes {
		got = append(got, dr{r.GetDirectResponse().GetStatus(), r.GetDirectResponse().GetBody().GetInlineString()})
	}
	if d := cmp.Diff([]dr{{410, "gone"}, {503, ""}}, got); d != "" {
		t.Errorf("direct responses (-want +got):\n%s", d)
	}
}

// HTTPMatchRequest.sourceLabels: "One or more labels that constrain the
// applicability of a rule to source (client) workloads with the given
// labels"; sourceNamespace "constrain[s] the applicability of a rule to
// workloads in that namespace"; port "Specifies the ports on the host that
// is being addressed"; gateways: "Names of gateways where the rule should
// be applied" (a sidecar is the reserved "mesh"). A match block that does
// not apply is left out; a rule with none left routes nothing.
func TestIstioSourceSelectors(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - name: other-app
    match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews}}]
  - name: other-ns
    match: [{sourceNamespace: prod}]
    route: [{destination: {host: reviews}}]
  - name: other-port
    match: [{port: 9090}]
    route: [{destination: {host: reviews}}]
  - name: gateway-only
    match: [{gateways: [istio-system/ingress]}]
    route: [{destination: {host: reviews}}]
  - name: mine
    match:
    - {sourceLabels: {app: reviews, version: v1}, sourceNamespace: default, port: 9080, uri: {prefix: /mine}}
    - {gateways: [mesh], uri: {prefix: /mesh}}
    route: [{destination: {host: ratings}}]
  - name: rest
    route: [{destination: {host: ratings}}]
`)
	var got []string
	for _, r := range ratingsRoutesFor(t, w, sidecarProxy) {
		got = append(got, r.GetName()+" "+r.GetMatch().GetPrefix())
	}
	want := []string{"mine /mine", "mine /mesh", "rest /"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("routes for reviews-v1 (-want +got):\n%s", d)
	}
	// The same VirtualService seen from a productpage pod keeps its rule,
	// and the mesh-gateway match block of "mine".
	pp := &translate.Proxy{ID: "sidecar~127.10.0.20~productpage-0.default~default.svc.cluster.local", IP: "127.10.0.20", Pod: "productpage-0", Namespace: "default", Labels: map[string]string{"app": "productpage"}, InterceptionMode: "NONE"}
	got = nil
	for _, r := range ratingsRoutesFor(t, w, pp) {
		got = append(got, r.GetName())
	}
	if d := cmp.Diff([]string{"other-app", "mine", "rest"}, got); d != "" {
		t.Errorf("routes for productpage (-want +got):\n%s", d)
	}
}

// VirtualService.gateways: "The reserved word mesh is used to imply all
// the sidecars in the mesh. When this field is omitted, the default
// gateway (mesh) will be used ... If a list of gateway names is provided,
// the rules will apply only to the gateways", so a VirtualService bound
// only to a gateway leaves the sidecar's default route.
func TestIstioGatewayOnlyVirtualService(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  gateways: [istio-system/ingress]
  http:
  - route: [{destination: {host: reviews}}]
`)
	routes := ratingsRoutesFor(t, w, sidecarProxy)
	if len(routes) != 1 || routes[0].GetName() != "default" {
		t.Fatalf("routes %v, want only the default route", routes)
	}
	if d := cmp.Diff([]wc{{ratingsCluster, 1}}, weights(routes[0])); d != "" {
		t.Error(d)
	}
}

// VirtualService.exportTo: "A list of namespaces to which this virtual
// service is exported ... The value "." is reserved and defines an export
// to the same namespace that the virtual service is declared in.
// Similarly the value "*" is reserved and defines an export to all
// namespaces."
func TestIstioVirtualServiceExportTo(t *testing.T) {
	vs := func(name, exportTo string) string {
		return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ` + name + `, namespace: other}
spec:
  hosts: [ratings.default.svc.cluster.local]
  exportTo: ` + exportTo + `
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local}}]
`
	}
	for _, c := range []struct {
		exportTo string
		visible  bool
	}{
		{`["."]`, false},
		{`["prod"]`, false},
		{`["default"]`, true},
		{`["*"]`, true},
		{`[".", "default"]`, true},
	} {
		t.Run(c.exportTo, func(t *testing.T) {
			routes := ratingsRoutesFor(t, bareWorld(t, vs("v", c.exportTo)), sidecarProxy)
			want := []wc{{ratingsCluster, 1}}
			if c.visible {
				want = []wc{{"outbound|9080||reviews.default.svc.cluster.local", 1}}
			}
			if d := cmp.Diff(want, weights(routes[0])); d != "" {
				t.Errorf("exportTo %s (visible %v) (-want +got):\n%s", c.exportTo, c.visible, d)
			}
		})
	}
}

// A VirtualService takes precedence over a Gateway API HTTPRoute for the
// same Service, as Istio documents for GAMMA ("if a VirtualService and
// an HTTPRoute both target a service, the VirtualService wins" is Istio's
// behaviour for mesh traffic); the HTTPRoute applies once it is gone
// (testdata/mesh's ratings-route.yaml, covered by TestHTTPRoute).
func TestIstioVirtualServiceOverHTTPRoute(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: reviews}}]
`)
	routes := ratingsRoutesFor(t, w, sidecarProxy)
	if len(routes) != 1 {
		t.Fatalf("%d routes, want the VirtualService's one", len(routes))
	}
	if d := cmp.Diff([]wc{{"outbound|9080||reviews.default.svc.cluster.local", 1}}, weights(routes[0])); d != "" {
		t.Error(d)
	}
}

// DestinationRule subsets: "Note that the traffic policy specified at the
// subset level will override the corresponding settings specified at the
// service level" - section by section, so a subset that sets only a
// connection pool keeps the service's load balancer.
func TestIstioSubsetPolicyOverride(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 7}}
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	got := map[string]clusterv3.Cluster_LbPolicy{}
	for _, s := range []string{"", "v1", "v2"} {
		got[s] = findCluster(r, "outbound|9080|"+s+"|ratings.default.svc.cluster.local").GetLbPolicy()
	}
	want := map[string]clusterv3.Cluster_LbPolicy{"": clusterv3.Cluster_ROUND_ROBIN, "v1": clusterv3.Cluster_RANDOM, "v2": clusterv3.Cluster_ROUND_ROBIN}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("lb policy per subset (-want +got):\n%s", d)
	}
	if n := findCluster(r, "outbound|9080|v2|ratings.default.svc.cluster.local").GetCircuitBreakers().GetThresholds()[0].GetMaxConnections().GetValue(); n != 7 {
		t.Errorf("v2 max connections %d, want 7", n)
	}
}

// TrafficPolicy.portLevelSettings: "Traffic policies specific to
// individual ports. Note that port level settings will override the
// destination-level settings. Traffic settings specified at the
// destination-level will not be inherited when overridden by port-level
// settings, i.e. default values will be applied to fields omitted in
// port-level traffic policies." A port-level setting for another port
// changes nothing.
func TestIstioPortLevelSettingsDoNotInherit(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 5}}
    portLevelSettings:
    - port: {number: 9080}
      connectionPool: {tcp: {maxConnections: 9}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 9080}
        outlierDetection: {consecutive5xxErrors: 3}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings:
    - port: {number: 9999}
      loadBalancer: {simple: RANDOM}
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	type pol struct {
		LB      clusterv3.Cluster_LbPolicy
		MaxConn uint32
	}
	get := func(name string) pol {
		c := findCluster(r, name)
		if c == nil {
			t.Fatalf("no cluster %s", name)
		}
		var n uint32
		if th := c.GetCircuitBreakers().GetThresholds(); len(th) > 0 {
			n = th[0].GetMaxConnections().GetValue()
		}
		return pol{c.GetLbPolicy(), n}
	}
	got := map[string]pol{}
	for _, s := range []string{"", "v1", "v2"} {
		got["ratings "+s] = get("outbound|9080|" + s + "|ratings.default.svc.cluster.local")
	}
	got["reviews"] = get("outbound|9080||reviews.default.svc.cluster.local")
	dflt := get("outbound|9080||reviews-v1.default.svc.cluster.local").MaxConn // no DestinationRule at all
	want := map[string]pol{
		// The port-level connection pool replaces the whole policy: the
		// load balancer is back to Istio's default, LEAST_REQUEST.
		"ratings ": {clusterv3.Cluster_LEAST_REQUEST, 9},
		// The subset's own section overrides what it inherits.
		"ratings v1": {clusterv3.Cluster_RANDOM, 9},
		// The subset's port-level setting replaces everything again.
		"ratings v2": {clusterv3.Cluster_LEAST_REQUEST, dflt},
		"reviews":    {clusterv3.Cluster_ROUND_ROBIN, dflt},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("cluster policies (-want +got):\n%s", d)
	}
}

// HTTPMatchRequest.queryParams: "For a query parameter like "?key", the
// map key would be "key" and the string match could be defined as exact:
// """ (an empty value, as istiod passes it to Envoy: "?key=abc" does not
// match), "For a query parameter like "?key=abc" or "?key=abx" ... prefix:
// "ab"", and {} checks presence only (istiod's present_match).
func TestIstioQueryParamMatch(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{queryParams: {empty: {exact: ""}, pre: {prefix: ab}, any: {}}}]
    route: [{destination: {host: ratings}}]
`)
	got := ratingsRoutesFor(t, w, sidecarProxy)[0].GetMatch().GetQueryParameters()
	want := []*routev3.QueryParameterMatcher{
		{Name: "any", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}},
		{Name: "empty", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ""}}}},
		{Name: "pre", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "ab"}}}},
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("query parameter matchers (-want +got):\n%s", d)
	}
}

// outboundHosts lists the hosts a proxy has outbound clusters for.
func outboundHosts(r *translate.Resources) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range r.Clusters {
		parts := strings.Split(c.Name, "|")
		if len(parts) != 4 || parts[0] != "outbound" || seen[parts[3]] {
			continue
		}
		seen[parts[3]] = true
		out = append(out, parts[3])
	}
	sort.Strings(out)
	return out
}

// Sidecar egress hosts (sidecar reference, IstioEgressListener.hosts):
// "One or more service hosts exposed by the listener in
// namespace/dnsName format. Services in the specified namespace matching
// dnsName will be exposed ... Set the namespace to * to select services
// from any namespace, . to select the current namespace ... Use ~/* to
// import no hosts" and "The dnsName should be specified using FQDN
// format, optionally including a wildcard character in the left-most
// component".
func TestIstioSidecarEgressHosts(t *testing.T) {
	const entries = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: ext}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local}
spec:
  hosts: [local.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
`
	kube := []string{"db.default.svc.cluster.local", "greeter.default.svc.cluster.local", "ratings.default.svc.cluster.local", "reviews-v1.default.svc.cluster.local", "reviews-v2.default.svc.cluster.local", "reviews.default.svc.cluster.local"}
	for _, c := range []struct {
		hosts string
		want  []string
	}{
		{`["*/*"]`, append([]string{"api.example.com"}, append(append([]string(nil), kube...), "local.example.com")...)},
		{`["./*"]`, append(append([]string(nil), kube...), "local.example.com")},
		{`["ext/*"]`, []string{"api.example.com"}},
		{`["*/api.example.com"]`, []string{"api.example.com"}},
		{`["./*.example.com"]`, []string{"local.example.com"}},
		{`["./reviews.default.svc.cluster.local", "istio-system/*"]`, []string{"reviews.default.svc.cluster.local"}},
		{`["~/*"]`, nil},
	} {
		t.Run(c.hosts, func(t *testing.T) {
			w := bareWorld(t, entries, `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - hosts: `+c.hosts+`
`)
			sort.Strings(c.want)
			if d := cmp.Diff(c.want, outboundHosts(translate.ForProxy(w, sidecarProxy, nil))); d != "" {
				t.Errorf("outbound hosts (-want +got):\n%s", d)
			}
		})
	}
}

// ServiceEntry (service-entry reference): resolution DNS "Attempt to
// resolve the IP address by querying the ambient DNS", using the hosts
// when there are no endpoints and the endpoints' addresses otherwise;
// Port.targetPort is "The port number on the endpoint where the traffic
// will be received. If unset, defaults to number", and an endpoint's own
// ports map overrides it; STATIC uses the endpoints' IPs; NONE passes
// the connection through to its original destination. exportTo "."
// keeps the entry in its namespace.
func TestIstioServiceEntryResolution(t *testing.T) {
	w := bareWorld(t, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns-hosts}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns-endpoints}
spec:
  hosts: [backend.example.com]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9090}]
  endpoints:
  - {address: a.internal.example.com, ports: {http: 8080}}
  - {address: b.internal.example.com}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static}
spec:
  hosts: [vm.example.com]
  addresses: [240.0.0.9]
  resolution: STATIC
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  endpoints: [{address: 10.1.0.5}, {address: 10.1.0.6, ports: {tcp-pg: 6432}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: passthrough}
spec:
  hosts: [any.example.com]
  addresses: [240.0.1.0/24]
  resolution: NONE
  ports: [{number: 3306, name: tcp-mysql, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: other}
spec:
  hosts: [private.example.com]
  exportTo: ["."]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	type cl struct {
		Type  clusterv3.Cluster_DiscoveryType
		Addrs []string
	}
	get := func(name string) *cl {
		c := findCluster(r, name)
		if c == nil {
			return nil
		}
		la := c.GetLoadAssignment()
		if c.GetType() == clusterv3.Cluster_EDS {
			la = findCLA(r, name)
		}
		out := &cl{Type: c.GetType()}
		for _, l := range la.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				out.Addrs = append(out.Addrs, sa.GetAddress()+":"+itoa(sa.GetPortValue()))
			}
		}
		return out
	}
	got := map[string]*cl{}
	for _, n := range []string{
		"outbound|443||api.example.com", "outbound|80||backend.example.com", "outbound|5432||vm.example.com",
		"outbound|3306||any.example.com", "outbound|443||private.example.com",
	} {
		got[n] = get(n)
	}
	want := map[string]*cl{
		"outbound|443||api.example.com":     {clusterv3.Cluster_STRICT_DNS, []string{"api.example.com:443"}},
		"outbound|80||backend.example.com":  {clusterv3.Cluster_STRICT_DNS, []string{"a.internal.example.com:8080", "b.internal.example.com:9090"}},
		"outbound|5432||vm.example.com":     {clusterv3.Cluster_EDS, []string{"10.1.0.5:5432", "10.1.0.6:6432"}},
		"outbound|3306||any.example.com":    {Type: clusterv3.Cluster_ORIGINAL_DST},
		"outbound|443||private.example.com": nil,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("clusters (-want +got):\n%s", d)
	}
}

// DestinationRule lookup (destination-rule reference, exportTo and the
// traffic-management docs): a rule in the client's namespace is used
// first, then one in the service's namespace, then one in the root
// namespace (istio-system); exportTo hides a rule from other namespaces.
func TestIstioDestinationRuleLookup(t *testing.T) {
	dr := func(ns, lb, exportTo string) string {
		return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-` + ns + `, namespace: ` + ns + `}
spec:
  host: ratings.default.svc.cluster.local
  exportTo: ` + exportTo + `
  trafficPolicy: {loadBalancer: {simple: ` + lb + `}}
`
	}
	// The proxy is in "client"; ratings lives in "default".
	client := &translate.Proxy{ID: "sidecar~127.10.0.40~c-0.client~client.svc.cluster.local", IP: "127.10.0.40", Pod: "c-0", Namespace: "client", InterceptionMode: "NONE"}
	for _, c := range []struct {
		name  string
		rules []string
		want  clusterv3.Cluster_LbPolicy
	}{
		{"root only", []string{dr("istio-system", "RANDOM", `["*"]`)}, clusterv3.Cluster_RANDOM},
		{"service namespace over root", []string{dr("istio-system", "RANDOM", `["*"]`), dr("default", "ROUND_ROBIN", `["*"]`)}, clusterv3.Cluster_ROUND_ROBIN},
		{"client namespace over service", []string{dr("default", "ROUND_ROBIN", `["*"]`), dr("client", "RANDOM", `["*"]`)}, clusterv3.Cluster_RANDOM},
		{"service rule not exported", []string{dr("istio-system", "RANDOM", `["*"]`), dr("default", "ROUND_ROBIN", `["."]`)}, clusterv3.Cluster_RANDOM},
		{"none", nil, clusterv3.Cluster_LEAST_REQUEST},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := translate.ForProxy(bareWorld(t, c.rules...), client, nil)
			if got := findCluster(r, ratingsCluster).GetLbPolicy(); got != c.want {
				t.Errorf("lb policy %v, want %v", got, c.want)
			}
		})
	}
}

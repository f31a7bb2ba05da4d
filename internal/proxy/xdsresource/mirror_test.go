package xdsresource_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

const mirrorCORSVS = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-mirror}
spec:
  hosts: [reviews-v2]
  http:
  - name: whole
    match: [{uri: {prefix: /whole}}]
    route: [{destination: {host: reviews-v2}}]
    mirror: {host: reviews-v1, port: {number: 9080}}
  - name: share
    match: [{uri: {prefix: /share}}]
    route: [{destination: {host: reviews-v2}}]
    mirror: {host: reviews-v1}
    mirrorPercentage: {value: 12.5}
  - name: legacy
    match: [{uri: {prefix: /legacy}}]
    route: [{destination: {host: reviews-v2}}]
    mirror: {host: reviews-v1}
    mirrorPercent: 30
  - name: none
    match: [{uri: {prefix: /none}}]
    route: [{destination: {host: reviews-v2}}]
    mirror: {host: reviews-v1}
    mirrorPercentage: {value: 0}
  - name: many
    match: [{uri: {prefix: /many}}]
    route: [{destination: {host: reviews-v2}}]
    mirrors:
    - destination: {host: reviews-v1}
    - destination: {host: reviews-v2}
      percentage: {value: 50}
    - destination: {host: reviews-v1}
      percentage: {value: 0}
  - name: cors
    match: [{uri: {prefix: /cors}}]
    route: [{destination: {host: reviews-v2}}]
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {prefix: "https://b."}, {regex: "https://.*[.]c[.]example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a, x-b]
      exposeHeaders: [x-c]
      maxAge: 90s
      allowCredentials: true
      unmatchedPreflights: IGNORE
  - name: legacy-cors
    corsPolicy:
      allowOrigin: ["https://old.example"]
    redirect: {uri: /elsewhere}
`

// TestTranslatorMirrorAndCORS follows a VirtualService's mirrors and
// corsPolicy from YAML through istiod's translation to what the proxy
// decodes: mirror shares in millionths whatever the denominator (100%
// by default, none at an explicit 0), the mirror's cluster named as a
// destination's, and the CORS policy as Envoy's filter reads it.
func TestTranslatorMirrorAndCORS(t *testing.T) {
	res := translate.ForProxy(world(t, mirrorCORSVS), sidecarProxy, nil)
	got := decodedRoutes(t, res, "9080", "reviews-v2.default.svc.cluster.local:9080")
	const v1, v2 = "outbound|9080||reviews-v1.default.svc.cluster.local", "outbound|9080||reviews-v2.default.svc.cluster.local"
	wantMirrors := map[string][]xdsresource.MirrorPolicy{
		"whole":  {{Cluster: v1, Percent: xdsresource.Million}},
		"share":  {{Cluster: v1, Percent: 125_000}},
		"legacy": {{Cluster: v1, Percent: 300_000}},
		"none":   nil,
		"many":   {{Cluster: v1, Percent: xdsresource.Million}, {Cluster: v2, Percent: 500_000}},
	}
	for name, w := range wantMirrors {
		r, ok := got[name]
		if !ok {
			t.Fatalf("no route %q for reviews-v2 in route configuration 9080", name)
		}
		if d := cmp.Diff(w, r.Action.Mirrors); d != "" {
			t.Errorf("route %s mirrors (-want +got):\n%s", name, d)
		}
		if r.CORS != nil {
			t.Errorf("route %s: CORS %+v, want none", name, r.CORS)
		}
	}
	wantCORS := map[string]*xdsresource.CORSPolicy{
		"cors": {
			AllowOrigins: []xdsresource.StringMatcher{
				{Kind: xdsresource.StringExact, Value: "https://a.example"},
				{Kind: xdsresource.StringPrefix, Value: "https://b."},
				{Kind: xdsresource.StringRegex, Value: "https://.*[.]c[.]example", Regex: regexp.MustCompile(`^(?:https://.*[.]c[.]example)$`)},
			},
			AllowMethods: "GET,POST", AllowHeaders: "x-a,x-b", ExposeHeaders: "x-c", MaxAge: "90",
			AllowCredentials: true, Enabled: xdsresource.Million, ForwardUnmatched: false,
		},
		"legacy-cors": {
			AllowOrigins: []xdsresource.StringMatcher{{Kind: xdsresource.StringExact, Value: "https://old.example"}},
			Enabled:      xdsresource.Million, ForwardUnmatched: true,
		},
	}
	for name, w := range wantCORS {
		r, ok := got[name]
		if !ok {
			t.Fatalf("no route %q", name)
		}
		if d := cmp.Diff(w, r.CORS, cmpRegexp); d != "" {
			t.Errorf("route %s CORS (-want +got):\n%s", name, d)
		}
	}
	// The outbound connection managers carry the CORS filter, which the
	// proxy accepts.
	for _, l := range res.Listeners {
		if _, _, err := decode(xdsresource.ListenerType, marshal(t, l)); err != nil {
			t.Fatalf("listener %s: %v", l.Name, err)
		}
	}
}

// TestMirrorAndCORSRefused: what the proxy cannot do as Envoy would is
// NACKed, naming the field, not silently done otherwise.
func TestMirrorAndCORSRefused(t *testing.T) {
	half := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 50}}
	for _, c := range []struct {
		name   string
		mirror *routev3.RouteAction_RequestMirrorPolicy
		cors   *corsv3.CorsPolicy
		route  func(*routev3.Route)
		want   string
	}{
		{name: "mirror cluster header", mirror: &routev3.RouteAction_RequestMirrorPolicy{ClusterHeader: "x-c"}, want: "request_mirror_policies[0].cluster_header"},
		{name: "mirror without -shadow", mirror: &routev3.RouteAction_RequestMirrorPolicy{Cluster: "c", DisableShadowHostSuffixAppend: true}, want: "request_mirror_policies[0].disable_shadow_host_suffix_append"},
		{name: "mirror without cluster", mirror: &routev3.RouteAction_RequestMirrorPolicy{RuntimeFraction: half}, want: "request_mirror_policies[0].cluster"},
		{name: "mirror fraction without default", mirror: &routev3.RouteAction_RequestMirrorPolicy{Cluster: "c", RuntimeFraction: &corev3.RuntimeFractionalPercent{RuntimeKey: "k"}}, want: "request_mirror_policies[0].runtime_fraction.default_value"},
		{name: "cors shadow", cors: &corsv3.CorsPolicy{ShadowEnabled: half}, want: "typed_per_filter_config[envoy.filters.http.cors].shadow_enabled"},
		{name: "route action cors", route: func(r *routev3.Route) {
			//lint:ignore SA1019 the deprecated field is what is refused
			r.GetRoute().Cors = &routev3.CorsPolicy{}
		}, want: "route.cors"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt := &routev3.Route{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
			}
			if c.mirror != nil {
				rt.GetRoute().RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{c.mirror}
			}
			if c.cors != nil {
				a, err := anypb.New(c.cors)
				if err != nil {
					t.Fatal(err)
				}
				rt.TypedPerFilterConfig = map[string]*anypb.Any{xdsresource.CORSFilterName: a}
			}
			if c.route != nil {
				c.route(rt)
			}
			rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{rt}}}}
			_, _, err := decode(xdsresource.RouteType, marshal(t, rc))
			var xe *xdsresource.Error
			if !errors.As(err, &xe) || !strings.Contains(xe.Path, c.want) {
				t.Fatalf("err = %v, want a NACK at %s", err, c.want)
			}
		})
	}
	// Accepted as Envoy takes them: a policy with only its origins, the
	// credentials off, private network access on.
	a, err := anypb.New(&corsv3.CorsPolicy{AllowCredentials: wrapperspb.Bool(false), AllowPrivateNetworkAccess: wrapperspb.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
		TypedPerFilterConfig: map[string]*anypb.Any{xdsresource.CORSFilterName: a},
	}}}}}
	_, v, err := decode(xdsresource.RouteType, marshal(t, rc))
	if err != nil {
		t.Fatal(err)
	}
	want := &xdsresource.CORSPolicy{AllowPrivateNetwork: true, Enabled: xdsresource.Million, ForwardUnmatched: true}
	if d := cmp.Diff(want, v.(*xdsresource.RouteConfig).VirtualHosts[0].Routes[0].CORS); d != "" {
		t.Errorf("CORS (-want +got):\n%s", d)
	}
}

const gatewayMirrorCORS = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: v1}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews-v1, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /third}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: reviews-v2, port: 9080}, fraction: {numerator: 1, denominator: 3}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: ratings, port: 9080}, percent: 0}
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /cors}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: ratings, port: 9080}, percent: 20}
    - type: CORS
      cors:
        allowOrigins: ["https://*.example", "https://exact.example"]
        allowMethods: [GET]
        exposeHeaders: [x-a, x-b]
    backendRefs: [{name: reviews-v1, port: 9080}]
`

// TestTranslatorGatewayMirrorAndCORS: an HTTPRoute's RequestMirror and
// CORS filters as the proxy decodes them: a fraction in millionths, an
// explicit 0 sending nothing, a wildcard origin as a regex where * spans
// labels, and the Gateway API's default max age.
func TestTranslatorGatewayMirrorAndCORS(t *testing.T) {
	res := translate.ForProxy(world(t, gatewayMirrorCORS), sidecarProxy, nil)
	got := decodedRoutes(t, res, "9080", "reviews-v1.default.svc.cluster.local:9080")
	third, cors := got["v1.default.rules[0]"], got["v1.default.rules[1]"]
	if third.Action == nil || cors.Action == nil {
		t.Fatalf("routes of reviews-v1: %v", got)
	}
	want := []xdsresource.MirrorPolicy{{Cluster: "outbound|9080||reviews-v2.default.svc.cluster.local", Percent: 333_333}}
	if d := cmp.Diff(want, third.Action.Mirrors); d != "" {
		t.Errorf("rules[0] mirrors (-want +got):\n%s", d)
	}
	want = []xdsresource.MirrorPolicy{{Cluster: "outbound|9080||ratings.default.svc.cluster.local", Percent: 200_000}}
	if d := cmp.Diff(want, cors.Action.Mirrors); d != "" {
		t.Errorf("rules[1] mirrors (-want +got):\n%s", d)
	}
	wantCORS := &xdsresource.CORSPolicy{
		AllowOrigins: []xdsresource.StringMatcher{
			{Kind: xdsresource.StringRegex, Value: `https://.*\.example`, Regex: regexp.MustCompile(`^(?:https://.*\.example)$`)},
			{Kind: xdsresource.StringExact, Value: "https://exact.example"},
		},
		AllowMethods: "GET", ExposeHeaders: "x-a,x-b", MaxAge: "5", Enabled: xdsresource.Million, ForwardUnmatched: true,
	}
	if d := cmp.Diff(wantCORS, cors.CORS, cmpRegexp); d != "" {
		t.Errorf("rules[1] CORS (-want +got):\n%s", d)
	}
	if third.CORS != nil {
		t.Errorf("rules[0] has CORS %+v, want none", third.CORS)
	}
}

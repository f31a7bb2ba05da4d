package translate

import (
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const corsFilterName = "envoy.filters.http.cors"

// corsFilter is the CORS filter as istiod puts it in a sidecar's outbound
// connection managers, ahead of the fault filter: empty, so each route's
// own policy (typed_per_filter_config) is what applies.
func corsFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: corsFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}}
}

// applyCORS gives a route its VirtualService corsPolicy, on every kind of
// route (a redirect or direct response too), as istiod does. Proxyless
// gRPC listeners carry no CORS filter, so their routes get none either.
func (t *translation) applyCORS(r *routev3.Route, in *networking.CorsPolicy) {
	if in == nil || t.proxy.Generator == GeneratorGRPC {
		return
	}
	setPerFilter(r, corsFilterName, translateCORS(in))
}

// translateCORS is istiod's TranslateCORSPolicy: allowOrigins as string
// matchers (else the deprecated allowOrigin as exact ones), the lists
// joined with "," as Envoy sends them, maxAge in whole seconds, the
// filter on for every request, and unmatchedPreflights IGNORE as
// forward_not_matching_preflights false (FORWARD and unset: true).
func translateCORS(in *networking.CorsPolicy) *corsv3.CorsPolicy {
	out := &corsv3.CorsPolicy{
		ForwardNotMatchingPreflights: wrapperspb.Bool(in.GetUnmatchedPreflights() != networking.CorsPolicy_IGNORE),
		FilterEnabled:                &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}},
		AllowCredentials:             in.GetAllowCredentials(),
		AllowHeaders:                 strings.Join(in.GetAllowHeaders(), ","),
		AllowMethods:                 strings.Join(in.GetAllowMethods(), ","),
		ExposeHeaders:                strings.Join(in.GetExposeHeaders(), ","),
	}
	if in.GetAllowOrigins() != nil {
		for _, sm := range in.GetAllowOrigins() {
			if sm.GetMatchType() != nil {
				out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, stringMatcher(sm))
			}
		}
	} else {
		//lint:ignore SA1019 users still write the deprecated field, which Istio honours
		for _, o := range in.GetAllowOrigin() {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}})
		}
	}
	if in.GetMaxAge() != nil {
		out.MaxAge = strconv.FormatInt(in.GetMaxAge().GetSeconds(), 10)
	}
	return out
}

// setPerFilter puts a filter's per-route config on r.
func setPerFilter(r *routev3.Route, name string, cfg *corsv3.CorsPolicy) {
	if r.TypedPerFilterConfig == nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	r.TypedPerFilterConfig[name] = mustAny(cfg)
}

// gwCORS gives a rule's routes the rule's CORS filter, as Istio turns it
// into a corsPolicy, with the Gateway API's own rules where Istio's
// conversion leaves them out: an origin's host may hold a `*` that
// matches any labels to its left (a regex here; Istio matches it
// literally), and an unset maxAge is the API's default of 5 seconds.
func (t *translation) gwCORS(routes []rankedRoute, filters []gatewayv1.HTTPRouteFilter) {
	if t.proxy.Generator == GeneratorGRPC {
		return
	}
	for _, f := range filters {
		c := f.CORS
		if f.Type != gatewayv1.HTTPRouteFilterCORS || c == nil {
			continue
		}
		out := &corsv3.CorsPolicy{
			ForwardNotMatchingPreflights: wrapperspb.Bool(true),
			FilterEnabled:                &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}},
			MaxAge:                       "5",
		}
		for _, o := range c.AllowOrigins {
			if sm := gwOriginMatcher(string(o)); sm != nil {
				out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
			}
		}
		if c.AllowCredentials != nil && *c.AllowCredentials {
			out.AllowCredentials = wrapperspb.Bool(true)
		}
		out.AllowMethods = gwJoin(c.AllowMethods)
		out.AllowHeaders = gwJoin(c.AllowHeaders)
		out.ExposeHeaders = gwJoin(c.ExposeHeaders)
		if c.MaxAge > 0 {
			out.MaxAge = strconv.FormatInt(int64(c.MaxAge), 10)
		}
		for _, r := range routes {
			setPerFilter(r.route, corsFilterName, out)
		}
	}
}

// gwOriginMatcher matches an allowOrigins entry: "*" every origin (Envoy
// allows all when a matcher takes "*"), a host with `*` by a regex in
// which the `*` spans any characters, dots included, anything else
// exactly.
func gwOriginMatcher(o string) *matcherv3.StringMatcher {
	switch {
	case o == "":
		return nil
	case o == "*" || !strings.Contains(o, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}}
	}
	parts := strings.Split(o, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Join(parts, ".*")}}}
}

func gwJoin[S ~string](in []S) string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = string(s)
	}
	return strings.Join(out, ",")
}

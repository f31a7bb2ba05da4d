package translate

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/trellismesh/trellis/api/split"
	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// gammaRoutes translates Gateway API HTTPRoutes and GRPCRoutes attached to
// the service (GAMMA: parentRefs naming a Service). A route in the
// service's namespace (producer route) applies to every client; a route in
// another namespace (consumer route) applies only to clients in that
// namespace and, as the GAMMA spec says, wins over producer routes.
func (t *translation) gammaRoutes(svc *registry.Service, port uint32) ([]*routev3.Route, bool) {
	var consumer, producer []*config.Object
	for _, o := range t.w.routes {
		if !attachesTo(o, svc, port) {
			continue
		}
		switch o.Namespace {
		case t.proxy.Namespace:
			if o.Namespace != svc.Namespace {
				consumer = append(consumer, o)
				continue
			}
			producer = append(producer, o)
		case svc.Namespace:
			producer = append(producer, o)
		}
	}
	chosen := producer
	if len(consumer) > 0 {
		chosen = consumer
	}
	if len(chosen) == 0 {
		return nil, false
	}
	var rs []rankedRoute
	for _, o := range chosen {
		switch r := o.Spec.(type) {
		case *gatewayv1.HTTPRoute:
			rs = append(rs, t.httpRouteRules(o, r, svc, port)...)
		case *gatewayv1.GRPCRoute:
			rs = append(rs, t.grpcRouteRules(o, r, svc, port)...)
		}
	}
	// The Gateway API orders matches across rules and routes by precedence,
	// not by position: exact path, then longest prefix, then method, then
	// header count, then query count; ties keep their order.
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].rank.less(rs[j].rank) })
	out := make([]*routev3.Route, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.route)
	}
	return out, true
}

func parentRefs(o *config.Object) []gatewayv1.ParentReference {
	switch r := o.Spec.(type) {
	case *gatewayv1.HTTPRoute:
		return r.Spec.ParentRefs
	case *gatewayv1.GRPCRoute:
		return r.Spec.ParentRefs
	}
	return nil
}

func attachesTo(o *config.Object, svc *registry.Service, port uint32) bool {
	for _, p := range parentRefs(o) {
		if p.Kind == nil || *p.Kind != "Service" {
			continue
		}
		if p.Group != nil && *p.Group != "" && *p.Group != "core" {
			continue
		}
		ns := o.Namespace
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		if ns != svc.Namespace || string(p.Name) != svc.Name {
			continue
		}
		if p.Port != nil && uint32(*p.Port) != port {
			continue
		}
		// GAMMA: a Service parent's sectionName is the name of one of its
		// ports, and the route attaches to that port alone.
		if p.SectionName != nil && *p.SectionName != "" {
			if sp := svc.Port(port); sp == nil || sp.Name != string(*p.SectionName) {
				continue
			}
		}
		return true
	}
	return false
}

type rank struct {
	exact     bool
	prefixLen int
	method    bool
	headers   int
	queries   int
}

func (a rank) less(b rank) bool {
	if a.exact != b.exact {
		return a.exact
	}
	if a.prefixLen != b.prefixLen {
		return a.prefixLen > b.prefixLen
	}
	if a.method != b.method {
		return a.method
	}
	if a.headers != b.headers {
		return a.headers > b.headers
	}
	return a.queries > b.queries
}

type rankedRoute struct {
	route *routev3.Route
	rank  rank
}

func (t *translation) httpRouteRules(o *config.Object, r *gatewayv1.HTTPRoute, svc *registry.Service, port uint32) []rankedRoute {
	var out []rankedRoute
	for i, rule := range r.Spec.Rules {
		refs := make([]gwBackend, 0, len(rule.BackendRefs))
		for _, b := range rule.BackendRefs {
			gb := gwBackend{ref: b.BackendRef}
			for _, f := range b.Filters {
				switch f.Type {
				case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
					gb.filters = append(gb.filters, headerFilter{req: f.RequestHeaderModifier})
				case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
					gb.filters = append(gb.filters, headerFilter{resp: f.ResponseHeaderModifier})
				}
			}
			refs = append(refs, gb)
		}
		var hf []headerFilter
		var redirect *gatewayv1.HTTPRequestRedirectFilter
		var rewrite *gatewayv1.HTTPURLRewriteFilter
		for _, f := range rule.Filters {
			hf = append(hf, headerFilter{f.RequestHeaderModifier, f.ResponseHeaderModifier})
			switch {
			case f.Type == gatewayv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil:
				redirect = f.RequestRedirect
			case f.Type == gatewayv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
				rewrite = f.URLRewrite
			}
		}
		action := t.backendAction(o.Namespace, svc, port, refs)
		t.gwMirrors(action, rule.Filters, o.Namespace, port) // mirror.go
		routes := ruleRoutes(o, i, action, rule.Matches, httpRouteMatch, hf)
		// ruleRoutes made one route per match, in order; a redirect or a
		// path rewrite depends on the prefix each one matched.
		for j := range routes {
			matched := matchedPrefix(rule.Matches, j)
			switch {
			case redirect != nil:
				routes[j].route.Action = &routev3.Route_Redirect{Redirect: gwRedirectAction(redirect, matched, port)}
			case rewrite != nil && routes[j].route.GetRoute() != nil:
				// The matches share one action: each gets its own copy.
				a := proto.Clone(routes[j].route.GetRoute()).(*routev3.RouteAction)
				gwApplyRewrite(a, rewrite, matched)
				routes[j].route.Action = &routev3.Route_Route{Route: a}
			}
		}
		t.gwCORS(routes, rule.Filters)
		t.applyRuleTimeouts(routes, rule.Timeouts, rule.Retry) // retry.go
		out = append(out, routes...)
	}
	return out
}

// matchedPrefix is what match j of a rule matched for ReplacePrefixMatch:
// a PathPrefix value ("/" when the rule has no match or the match no
// path), an Exact path, or "" for a regular expression, whose matched
// part is unknown (validation allows ReplacePrefixMatch only with one
// PathPrefix match).
func matchedPrefix(matches []gatewayv1.HTTPRouteMatch, j int) string {
	if j >= len(matches) || matches[j].Path == nil || matches[j].Path.Value == nil {
		return "/"
	}
	p := matches[j].Path
	if p.Type != nil && *p.Type == gatewayv1.PathMatchRegularExpression {
		return ""
	}
	return *p.Value
}

// gwRedirectAction translates a RequestRedirect filter. The Gateway API's
// defaults differ from Envoy's: the status is 302, and without a port the
// Location gets the scheme's well-known port when the filter sets a
// scheme, else the port of the "listener", which for a mesh route is the
// service port; the proxy leaves 80 and 443 out of the Location.
func gwRedirectAction(f *gatewayv1.HTTPRequestRedirectFilter, matched string, port uint32) *routev3.RedirectAction {
	ra := &routev3.RedirectAction{ResponseCode: routev3.RedirectAction_FOUND, PortRedirect: port}
	if f.Scheme != nil {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *f.Scheme}
		ra.PortRedirect = 80
		if *f.Scheme == "https" {
			ra.PortRedirect = 443
		}
	}
	if f.Port != nil {
		ra.PortRedirect = uint32(*f.Port)
	}
	if f.Hostname != nil {
		ra.HostRedirect = string(*f.Hostname)
	}
	if m := f.Path; m != nil {
		switch {
		case m.Type == gatewayv1.FullPathHTTPPathModifier && m.ReplaceFullPath != nil:
			ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *m.ReplaceFullPath}
		case m.Type == gatewayv1.PrefixMatchHTTPPathModifier && m.ReplacePrefixMatch != nil && matched != "":
			ra.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: replacePrefix(matched, *m.ReplacePrefixMatch)}
		}
	}
	if f.StatusCode != nil {
		if c, ok := redirectCodes[uint32(*f.StatusCode)]; ok {
			ra.ResponseCode = c
		}
	}
	return ra
}

// gwApplyRewrite translates a URLRewrite filter onto a route's action.
func gwApplyRewrite(a *routev3.RouteAction, f *gatewayv1.HTTPURLRewriteFilter, matched string) {
	if f.Hostname != nil {
		a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: string(*f.Hostname)}
	}
	if m := f.Path; m != nil {
		switch {
		case m.Type == gatewayv1.FullPathHTTPPathModifier && m.ReplaceFullPath != nil:
			a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^.*$"}, Substitution: escapeSubstitution(*m.ReplaceFullPath)}
		case m.Type == gatewayv1.PrefixMatchHTTPPathModifier && m.ReplacePrefixMatch != nil && matched != "":
			a.RegexRewrite = replacePrefix(matched, *m.ReplacePrefixMatch)
		}
	}
}

// replacePrefix is ReplacePrefixMatch as the Gateway API defines it, as a
// regex rewrite of the path: the matched prefix, a whole number of path
// segments with any trailing "/" ignored, is replaced, and the result never
// has a doubled or a missing "/" where they meet (prefix /foo, replacement
// /xyz: /foo/bar -> /xyz/bar, /foo -> /xyz, /foo/ -> /xyz/; replacement "/"
// or "": /foo/bar -> /bar, /foo -> /). Envoy's prefix_rewrite alone gets
// the "/" and "" cases wrong.
func replacePrefix(matched, replacement string) *matcherv3.RegexMatchAndSubstitute {
	prefix := regexp.QuoteMeta(strings.TrimSuffix(matched, "/"))
	repl := strings.TrimSuffix(replacement, "/")
	if repl == "" {
		return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + prefix + "/*"}, Substitution: "/"}
	}
	return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + prefix + "(/.*)?$"}, Substitution: escapeSubstitution(repl) + `\1`}
}

// escapeSubstitution makes a literal safe in an Envoy regex substitution,
// where a backslash starts a capture reference.
func escapeSubstitution(s string) string {
	return strings.ReplaceAll(s, `\`, `\\`)
}

func (t *translation) grpcRouteRules(o *config.Object, r *gatewayv1.GRPCRoute, svc *registry.Service, port uint32) []rankedRoute {
	var out []rankedRoute
	for i, rule := range r.Spec.Rules {
		refs := make([]gwBackend, 0, len(rule.BackendRefs))
		for _, b := range rule.BackendRefs {
			gb := gwBackend{ref: b.BackendRef}
			for _, f := range b.Filters {
				switch f.Type {
				case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
					gb.filters = append(gb.filters, headerFilter{req: f.RequestHeaderModifier})
				case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
					gb.filters = append(gb.filters, headerFilter{resp: f.ResponseHeaderModifier})
				}
			}
			refs = append(refs, gb)
		}
		var hf []headerFilter
		for _, f := range rule.Filters {
			hf = append(hf, headerFilter{f.RequestHeaderModifier, f.ResponseHeaderModifier})
		}
		out = append(out, ruleRoutes(o, i, t.backendAction(o.Namespace, svc, port, refs), rule.Matches, grpcRouteMatch, hf)...)
	}
	return out
}

// headerFilter is the part of an HTTPRoute or GRPCRoute filter translated
// onto routes.
type headerFilter struct{ req, resp *gatewayv1.HTTPHeaderFilter }

// ruleRoutes makes one Envoy route per match of rule i (a rule without
// matches matches everything), all sharing the rule's action and filters.
func ruleRoutes[M any](o *config.Object, i int, action any, matches []M, match func(M) (*routev3.RouteMatch, rank), filters []headerFilter) []rankedRoute {
	if len(matches) == 0 {
		var all M
		matches = []M{all}
	}
	out := make([]rankedRoute, 0, len(matches))
	for _, m := range matches {
		rm, rk := match(m)
		route := &routev3.Route{Name: fmt.Sprintf("%s.%s.rules[%d]", o.Name, o.Namespace, i), Match: rm}
		setAction(route, action)
		for _, f := range filters {
			applyHeaderFilter(route, f.req, f.resp)
		}
		out = append(out, rankedRoute{route: route, rank: rk})
	}
	return out
}

// gwBackend is a backendRef with the header filters that apply only when
// it is the backend chosen. The other filter types are not translated on
// a backendRef (the in-force table says so).
type gwBackend struct {
	ref     gatewayv1.BackendRef
	filters []headerFilter
}

// backendAction builds the route action for weighted backendRefs (weight
// defaults to 1). When every backend has weight 0 (or there is none), the
// spec asks for a 500.
func (t *translation) backendAction(routeNS string, svc *registry.Service, port uint32, backends []gwBackend) any {
	var dests []weighted
	var filters [][]headerFilter
	for _, gb := range backends {
		b := gb.ref
		w := uint32(1)
		if b.Weight != nil {
			w = uint32(max(*b.Weight, 0))
		}
		if w == 0 {
			continue
		}
		ns := routeNS
		if b.Namespace != nil {
			ns = string(*b.Namespace)
		}
		host := string(b.Name) + "." + ns
		p := port
		if b.Port != nil {
			p = uint32(*b.Port)
		}
		fq := t.w.Reg.FQDN(host, ns)
		dests = append(dests, weighted{cluster: ClusterName("outbound", p, "", fq), weight: w})
		filters = append(filters, gb.filters)
	}
	if len(dests) == 0 {
		return &routev3.DirectResponseAction{Status: 500}
	}
	if len(dests) == 1 {
		dests[0].weight = 1
	}
	a := t.routeAction(svc, port, dests)
	// grpc-go applies no header mutations; routeAction leaves
	// VirtualService destination headers out for it too.
	if t.proxy.Generator != GeneratorGRPC && slices.ContainsFunc(filters, func(f []headerFilter) bool { return len(f) > 0 }) {
		applyBackendFilters(a, dests, filters)
	}
	return a
}

// applyBackendFilters puts each backend's header filters on its own
// weighted cluster, so they apply only when that backend is picked. One
// backend becomes a weighted list of one, the only place such headers go.
func applyBackendFilters(a *routev3.RouteAction, dests []weighted, filters [][]headerFilter) {
	wc := a.GetWeightedClusters()
	if wc == nil {
		wc = &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: dests[0].cluster, Weight: wrapperspb.UInt32(dests[0].weight)}}}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	// routeAction lists the clusters in the order of dests.
	for i, cw := range wc.Clusters {
		for _, f := range filters[i] {
			if f.req != nil {
				cw.RequestHeadersToAdd = append(cw.RequestHeadersToAdd, gwHeaderOptions(f.req)...)
				cw.RequestHeadersToRemove = append(cw.RequestHeadersToRemove, f.req.Remove...)
			}
			if f.resp != nil {
				cw.ResponseHeadersToAdd = append(cw.ResponseHeadersToAdd, gwHeaderOptions(f.resp)...)
				cw.ResponseHeadersToRemove = append(cw.ResponseHeadersToRemove, f.resp.Remove...)
			}
		}
	}
}

func setAction(r *routev3.Route, action any) {
	switch a := action.(type) {
	case *routev3.RouteAction:
		r.Action = &routev3.Route_Route{Route: a}
	case *routev3.DirectResponseAction:
		r.Action = &routev3.Route_DirectResponse{DirectResponse: a}
	}
}

func httpRouteMatch(m gatewayv1.HTTPRouteMatch) (*routev3.RouteMatch, rank) {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	var rk rank
	if p := m.Path; p != nil && p.Value != nil {
		typ := gatewayv1.PathMatchPathPrefix
		if p.Type != nil {
			typ = *p.Type
		}
		switch typ {
		case gatewayv1.PathMatchExact:
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: *p.Value}
			rk.exact = true
		case gatewayv1.PathMatchRegularExpression:
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: *p.Value}}
		default:
			// PathPrefix matches whole segments: /foo matches /foo and /foo/bar, not /foobar.
			v := strings.TrimSuffix(*p.Value, "/")
			if v == "" {
				rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
			} else {
				rm.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: v}
			}
			rk.prefixLen = len(v) + 1
		}
	}
	for _, h := range m.Headers {
		hm := &routev3.HeaderMatcher{Name: strings.ToLower(string(h.Name))}
		if h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Value}}}}
		} else {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Value}}}
		}
		rm.Headers = append(rm.Headers, hm)
	}
	rk.headers = len(m.Headers)
	if m.Method != nil {
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: string(*m.Method)}}}})
		rk.method = true
	}
	for _, q := range m.QueryParams {
		sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: q.Value}}
		if q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression {
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: q.Value}}}
		}
		rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{Name: string(q.Name), QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}})
	}
	rk.queries = len(m.QueryParams)
	return rm, rk
}

// grpcRouteMatch maps a gRPC method match onto the request path
// /package.Service/Method.
func grpcRouteMatch(m gatewayv1.GRPCRouteMatch) (*routev3.RouteMatch, rank) {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	var rk rank
	if mm := m.Method; mm != nil {
		svc, meth := deref(mm.Service), deref(mm.Method)
		regex := mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression
		switch {
		case regex:
			s, me := svc, meth
			if s == "" {
				s = "[^/]+"
			}
			if me == "" {
				me = "[^/]+"
			}
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/" + s + "/" + me}}
		case svc != "" && meth != "":
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: "/" + svc + "/" + meth}
			rk.exact = true
		case svc != "":
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/" + svc + "/"}
			rk.prefixLen = len(svc) + 2
		case meth != "":
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/[^/]+/" + regexp.QuoteMeta(meth)}}
		}
	}
	for _, h := range m.Headers {
		sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Value}}
		if h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression {
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Value}}}
		}
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{Name: strings.ToLower(string(h.Name)), HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}})
	}
	rk.headers = len(m.Headers)
	return rm, rk
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func applyHeaderFilter(r *routev3.Route, req, resp *gatewayv1.HTTPHeaderFilter) {
	if req != nil {
		r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, gwHeaderOptions(req)...)
		r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, req.Remove...)
	}
	if resp != nil {
		r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, gwHeaderOptions(resp)...)
		r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, resp.Remove...)
	}
}

func gwHeaderOptions(f *gatewayv1.HTTPHeaderFilter) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	for _, h := range f.Set {
		out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: string(h.Name), Value: h.Value}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, h := range f.Add {
		out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: string(h.Name), Value: h.Value}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	return out
}

// splitRoutes translates an SMI TrafficSplit whose root service is svc:
// requests for the root go to the backend services by relative weight,
// on the same port.
func (t *translation) splitRoutes(svc *registry.Service, port uint32) ([]*routev3.Route, bool) {
	for _, o := range t.w.splits {
		ts := o.Spec.(*split.TrafficSplit)
		root := t.w.Reg.Lookup(ts.Spec.Service, o.Namespace)
		if root == nil || root.Hostname != svc.Hostname {
			continue
		}
		var dests []weighted
		for _, b := range ts.Spec.Backends {
			if b.WeightMilli <= 0 {
				continue
			}
			fq := t.w.Reg.FQDN(b.Service, o.Namespace)
			dests = append(dests, weighted{cluster: ClusterName("outbound", port, "", fq), weight: uint32(min(b.WeightMilli, 1<<31))})
		}
		if len(dests) == 0 {
			continue
		}
		dests = scaleWeights(dests)
		return []*routev3.Route{{
			Name:   fmt.Sprintf("%s.%s", o.Name, o.Namespace),
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: t.routeAction(svc, port, dests)},
		}}, true
	}
	return nil, false
}

// scaleWeights divides weights by their common divisor so they stay small
// (900m/100m becomes 9/1) and well inside Envoy's and grpc-go's sums.
func scaleWeights(in []weighted) []weighted {
	g := uint32(0)
	for _, d := range in {
		g = gcd(g, d.weight)
	}
	if g > 1 {
		for i := range in {
			in[i].weight /= g
		}
	}
	if len(in) == 1 {
		in[0].weight = 1
	}
	return in
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

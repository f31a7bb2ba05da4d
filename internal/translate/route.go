package translate

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// virtualHost builds the routes of one service port. Routing config is
// taken in this order of precedence: VirtualService, then Gateway API
// HTTPRoute/GRPCRoute with the Service as parent (GAMMA), then SMI
// TrafficSplit, then the default (everything to the service). Only one
// applies; the analyzer warns when a host has more than one.
func (t *translation) virtualHost(svc *registry.Service, port uint32, domains []string) *routev3.VirtualHost {
	vh := &routev3.VirtualHost{
		Name:    fmt.Sprintf("%s:%d", svc.Hostname, port),
		Domains: domains,
	}
	if o, vs := t.w.virtualServiceFor(t.proxy, svc.Hostname); vs != nil {
		vh.Routes = t.servedVSRoutes(o, vs, svc, port)
		return vh
	}
	if routes, ok := t.gammaRoutes(svc, port); ok {
		vh.Routes = routes
		return vh
	}
	if routes, ok := t.splitRoutes(svc, port); ok {
		vh.Routes = routes
		return vh
	}
	vh.Routes = []*routev3.Route{{
		Name:   "default",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: t.routeAction(svc, port, []weighted{{cluster: ClusterName("outbound", port, "", svc.Hostname), weight: 1}})},
	}}
	return vh
}

// domainsFor lists the names a client may use for a service port, as
// Kubernetes DNS resolves them from the proxy's namespace: the short name
// only from the service's own namespace.
func domainsFor(svc *registry.Service, port uint32, proxyNS string, withBare bool) []string {
	var names []string
	names = append(names, svc.Hostname)
	// Only Kubernetes-style names have the shorter forms.
	if svc.Name != "" && strings.HasPrefix(svc.Hostname, svc.Name+"."+svc.Namespace+".svc.") {
		names = append(names, svc.Name+"."+svc.Namespace, svc.Name+"."+svc.Namespace+".svc")
		if svc.Namespace == proxyNS {
			names = append(names, svc.Name)
		}
	}
	for _, a := range svc.Addresses {
		// An IPv6 address is bracketed in an authority, with or without
		// the port ([fd00::1]:80), as Istio writes its domains.
		if strings.Contains(a, ":") {
			a = "[" + a + "]"
		}
		names = append(names, a)
	}
	p := ":" + strconv.FormatUint(uint64(port), 10)
	var out []string
	for _, n := range names {
		if withBare {
			out = append(out, n)
		}
		out = append(out, n+p)
	}
	return out
}

type weighted struct {
	cluster string
	weight  uint32
	headers *networking.Headers
}

// vsRoutes translates a VirtualService's http routes for one service port,
// in order: Istio's first-match semantics map onto Envoy's ordered routes.
// Each match block becomes its own Envoy route (matches are ORed).
func (t *translation) vsRoutes(o *config.Object, vs *networking.VirtualService, svc *registry.Service, port uint32) []*routev3.Route {
	var out []*routev3.Route
	for i, hr := range vs.GetHttp() {
		name := hr.GetName()
		if name == "" {
			name = fmt.Sprintf("%s.%s.http[%d]", o.Name, o.Namespace, i)
		}
		matches := hr.GetMatch()
		if len(matches) == 0 {
			matches = []*networking.HTTPMatchRequest{nil}
		}
		for _, m := range matches {
			if !t.matchApplies(m, port) {
				continue
			}
			r := &routev3.Route{Name: name, Match: routeMatch(m)}
			switch {
			case hr.GetRedirect() != nil:
				r.Action = &routev3.Route_Redirect{Redirect: redirectAction(hr.GetRedirect(), port)}
			case hr.GetDirectResponse() != nil:
				dr := hr.GetDirectResponse()
				resp := &routev3.DirectResponseAction{Status: dr.GetStatus()}
				if b := dr.GetBody(); b != nil {
					switch {
					case b.GetString_() != "":
						resp.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: b.GetString_()}}
					case len(b.GetBytes()) > 0:
						resp.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.GetBytes()}}
					}
				}
				r.Action = &routev3.Route_DirectResponse{DirectResponse: resp}
			default:
				var dests []weighted
				for _, d := range hr.GetRoute() {
					c := t.destinationCluster(d.GetDestination(), o.Namespace, port)
					dests = append(dests, weighted{cluster: c, weight: uint32(max(d.GetWeight(), 0)), headers: d.GetHeaders()})
				}
				action := t.routeAction(svc, port, normalizeWeights(dests))
				t.applyTimeout(action, hr.GetTimeout())
				action.RetryPolicy = t.retryPolicy(hr.GetRetries(), hashes(action))
				applyRewrite(action, hr.GetRewrite(), m)
				t.applyMirrors(action, hr, o.Namespace, port) // mirror.go
				r.Action = &routev3.Route_Route{Route: action}
			}
			applyHeaders(r, hr.GetHeaders())
			t.applyFault(r, hr.GetFault()) // fault.go
			t.applyCORS(r, hr.GetCorsPolicy())
			out = append(out, r)
		}
	}
	return out
}

// normalizeWeights applies Istio's rules: weights are relative; a single
// destination takes everything; with several and none weighted, traffic
// splits evenly; a zero weight receives nothing and is dropped.
func normalizeWeights(in []weighted) []weighted {
	if len(in) == 1 {
		in[0].weight = 1
		return in
	}
	total := uint32(0)
	for _, d := range in {
		total += d.weight
	}
	if total == 0 {
		for i := range in {
			in[i].weight = 1
		}
		return in
	}
	out := in[:0]
	for _, d := range in {
		if d.weight > 0 {
			out = append(out, d)
		}
	}
	return out
}

// matchApplies filters match blocks that do not concern this proxy or
// port at all (port, sourceLabels, sourceNamespace, gateways), as Istio
// does when it builds a sidecar's routes.
func (t *translation) matchApplies(m *networking.HTTPMatchRequest, port uint32) bool {
	if m == nil {
		return true
	}
	if m.GetPort() != 0 && m.GetPort() != port {
		return false
	}
	if sl := m.GetSourceLabels(); len(sl) > 0 && !labelsMatch(sl, t.proxy.Labels) {
		return false
	}
	if ns := m.GetSourceNamespace(); ns != "" && ns != t.proxy.Namespace {
		return false
	}
	if gws := m.GetGateways(); len(gws) > 0 {
		mesh := false
		for _, g := range gws {
			mesh = mesh || g == "mesh"
		}
		return mesh
	}
	return true
}

// destinationCluster names the cluster a VirtualService destination means.
// The port is the destination's, else the service's only port, else the
// port the request arrived for.
func (t *translation) destinationCluster(d *networking.Destination, vsNS string, port uint32) string {
	fq := t.w.Reg.FQDN(d.GetHost(), vsNS)
	p := d.GetPort().GetNumber()
	if p == 0 {
		if target := t.w.Reg.Lookup(d.GetHost(), vsNS); target != nil && len(target.Ports) == 1 {
			p = target.Ports[0].Port
		} else {
			p = port
		}
	}
	if target := t.w.Reg.Lookup(d.GetHost(), vsNS); target != nil {
		fq = target.Hostname
	}
	return ClusterName("outbound", p, d.GetSubset(), fq)
}

func (t *translation) routeAction(svc *registry.Service, port uint32, dests []weighted) *routev3.RouteAction {
	a := &routev3.RouteAction{}
	if len(dests) == 1 && dests[0].headers == nil {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].cluster}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, d := range dests {
			cw := &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(d.weight)}
			if h := d.headers; h != nil && t.proxy.Generator != GeneratorGRPC {
				cw.RequestHeadersToAdd = headerOptions(h.GetRequest())
				cw.RequestHeadersToRemove = h.GetRequest().GetRemove()
				cw.ResponseHeadersToAdd = headerOptions(h.GetResponse())
				cw.ResponseHeadersToRemove = h.GetResponse().GetRemove()
			}
			wc.Clusters = append(wc.Clusters, cw)
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	// Istio disables the route timeout unless a VirtualService sets one.
	a.Timeout = zeroDuration()
	a.HashPolicy = t.hashPolicy(svc, port, dests)
	// Every outbound route retries by the mesh's default policy unless
	// its VirtualService says otherwise (retry.go).
	a.RetryPolicy = t.retryPolicy(nil, hashes(a))
	return a
}

// applyTimeout sets a VirtualService route's timeout. Unset keeps
// routeAction's 0 (no timeout), Istio's default; 0s also means none.
// grpc-go ignores the route timeout and reads max_stream_duration, as
// Istio sends it to proxyless clients.
func (t *translation) applyTimeout(a *routev3.RouteAction, d *durationpb.Duration) {
	if d == nil {
		return
	}
	a.Timeout = d
	if t.proxy.Generator == GeneratorGRPC {
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: d}
	}
}

// hashPolicy carries the DestinationRule consistentHash of each
// destination onto the route, where Envoy computes the hash. A
// destination's policy is the one its cluster was built with (the
// subset's over the top-level one, port-level settings over both, see
// mergePolicy), so a subset with its own consistentHash gets the hash its
// ring-hash cluster needs. Destinations that share a policy share one
// entry; different ones are all listed and Envoy combines them into one
// hash, which still sends equal keys to equal backends. grpc-go supports
// only header hashing, so other keys are dropped for it and logged.
func (t *translation) hashPolicy(svc *registry.Service, port uint32, dests []weighted) []*routev3.RouteAction_HashPolicy {
	var out []*routev3.RouteAction_HashPolicy
	for _, d := range dests {
		hp := t.destinationHash(svc, port, d.cluster)
		if hp == nil || slices.ContainsFunc(out, func(x *routev3.RouteAction_HashPolicy) bool { return proto.Equal(x, hp) }) {
			continue
		}
		out = append(out, hp)
	}
	return out
}

// destinationHash is the hash policy for one outbound cluster
// (outbound|port|subset|host); a name of another shape falls back to the
// virtual host's own service and port.
func (t *translation) destinationHash(svc *registry.Service, port uint32, cluster string) *routev3.RouteAction_HashPolicy {
	host, hostNS, subset := svc.Hostname, svc.Namespace, ""
	if parts := strings.SplitN(cluster, "|", 4); len(parts) == 4 && parts[0] == "outbound" {
		if p, err := strconv.ParseUint(parts[1], 10, 32); err == nil {
			port, subset, host = uint32(p), parts[2], parts[3]
			hostNS = ""
			if target := t.w.Reg.Lookup(host+".", ""); target != nil {
				hostNS = target.Namespace
			}
		}
	}
	dr := t.w.destinationRuleFor(t.proxy, host, hostNS)
	var subsetPolicy *networking.TrafficPolicy
	for _, ss := range dr.GetSubsets() {
		if subset != "" && ss.GetName() == subset {
			subsetPolicy = ss.GetTrafficPolicy()
			break
		}
	}
	ch := mergePolicy(dr.GetTrafficPolicy(), subsetPolicy, port).GetLoadBalancer().GetConsistentHash()
	if ch == nil {
		return nil
	}
	hp := &routev3.RouteAction_HashPolicy{}
	switch {
	case ch.GetHttpHeaderName() != "":
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: ch.GetHttpHeaderName()}}
	case ch.GetHttpCookie() != nil:
		c := ch.GetHttpCookie()
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: c.GetName(), Path: c.GetPath(), Ttl: c.GetTtl()}}
	case ch.GetUseSourceIp():
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}
	case ch.GetHttpQueryParameterName() != "":
		hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: ch.GetHttpQueryParameterName()}}
	default:
		return nil
	}
	if t.proxy.Generator == GeneratorGRPC && hp.GetHeader() == nil {
		t.log.Info("grpc-go hashes only on headers; dropping consistentHash key", "host", host, "subset", subset)
		return nil
	}
	return hp
}

// routeMatch translates one Istio match block.
func routeMatch(m *networking.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	if u := m.GetUri(); u != nil {
		switch {
		case u.GetExact() != "":
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.GetExact()}
		case u.GetPrefix() != "":
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.GetPrefix()}
		case u.GetRegex() != "":
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.GetRegex()}}
		}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	for _, name := range sortedMapKeys(m.GetHeaders()) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.GetHeaders()[name], false))
	}
	for _, name := range sortedMapKeys(m.GetWithoutHeaders()) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.GetWithoutHeaders()[name], true))
	}
	if meth := m.GetMethod(); meth != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":method", meth, false))
	}
	if auth := m.GetAuthority(); auth != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":authority", auth, false))
	}
	// Envoy, as Istio configures it, matches the scheme as the :scheme
	// pseudo-header.
	if sch := m.GetScheme(); sch != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":scheme", sch, false))
	}
	for _, name := range sortedMapKeys(m.GetQueryParams()) {
		sm := m.GetQueryParams()[name]
		qm := &routev3.QueryParameterMatcher{Name: name}
		if isEmptyMatch(sm) {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(sm)}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm
}

// isEmptyMatch is Istio's {}: no kind set. exact: "" is not empty: as
// istiod does, it matches the empty value only (VirtualService's queryParams
// use it for "?key").
func isEmptyMatch(sm *networking.StringMatch) bool {
	return sm.GetMatchType() == nil
}

// headerMatcher matches a header; an empty match means "present", as in
// Istio. invert serves withoutHeaders.
func headerMatcher(name string, sm *networking.StringMatch, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(name), InvertMatch: invert}
	if isEmptyMatch(sm) {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		return hm
	}
	hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(sm)}
	// withoutHeaders refuses a request only when the header matches; one
	// without the header is not refused, as Istio's translation says.
	hm.TreatMissingHeaderAsEmpty = invert
	return hm
}

func stringMatcher(sm *networking.StringMatch) *matcherv3.StringMatcher {
	switch sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: sm.GetExact()}}
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: sm.GetPrefix()}}
	default:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: sm.GetRegex()}}}
	}
}

// redirectAction translates an Istio redirect for a route of port.
func redirectAction(r *networking.HTTPRedirect, port uint32) *routev3.RedirectAction {
	ra := &routev3.RedirectAction{}
	switch {
	case r.GetUri() != "":
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: r.GetUri()}
	case r.GetPrefixRewrite() != "":
		// The route's matched prefix (the whole path for other matches) is
		// replaced, as Envoy's prefix_rewrite in a redirect does.
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: r.GetPrefixRewrite()}
	}
	if r.GetAuthority() != "" {
		ra.HostRedirect = r.GetAuthority()
	}
	if r.GetScheme() != "" {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: r.GetScheme()}
	}
	switch {
	case r.GetPort() != 0:
		ra.PortRedirect = r.GetPort()
	case r.GetDerivePort() == networking.HTTPRedirect_FROM_REQUEST_PORT:
		// The proxy has no "the request's port" setting, but routes are
		// built per port, so that port is the request's, as Istio does.
		ra.PortRedirect = port
	}
	// FROM_PROTOCOL_DEFAULT needs nothing: without a port the Location
	// keeps the request's authority, and a scheme change drops the old
	// scheme's default port.
	if c, ok := redirectCodes[r.GetRedirectCode()]; ok {
		ra.ResponseCode = c
	}
	return ra
}

// redirectCodes are the HTTP statuses Envoy's RedirectAction can answer
// with (its zero value is 301), for Istio's and the Gateway API's
// redirects alike.
var redirectCodes = map[uint32]routev3.RedirectAction_RedirectResponseCode{
	301: routev3.RedirectAction_MOVED_PERMANENTLY,
	302: routev3.RedirectAction_FOUND,
	303: routev3.RedirectAction_SEE_OTHER,
	307: routev3.RedirectAction_TEMPORARY_REDIRECT,
	308: routev3.RedirectAction_PERMANENT_REDIRECT,
}

func applyRewrite(a *routev3.RouteAction, rw *networking.HTTPRewrite, m *networking.HTTPMatchRequest) {
	if rw == nil {
		return
	}
	if rw.GetUri() != "" {
		if m.GetUri().GetPrefix() != "" {
			a.PrefixRewrite = rw.GetUri()
		} else {
			// Without a prefix match, Istio replaces the whole path.
			a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*"}, Substitution: rw.GetUri()}
		}
	}
	if rr := rw.GetUriRegexRewrite(); rr != nil {
		a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: rr.GetMatch()}, Substitution: rr.GetRewrite()}
	}
	if rw.GetAuthority() != "" {
		a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.GetAuthority()}
	}
}

func applyHeaders(r *routev3.Route, h *networking.Headers) {
	if h == nil {
		return
	}
	r.RequestHeadersToAdd = headerOptions(h.GetRequest())
	r.RequestHeadersToRemove = h.GetRequest().GetRemove()
	r.ResponseHeadersToAdd = headerOptions(h.GetResponse())
	r.ResponseHeadersToRemove = h.GetResponse().GetRemove()
}

// headerOptions maps Istio's set (overwrite) and add (append) operations.
func headerOptions(ops *networking.Headers_HeaderOperations) []*corev3.HeaderValueOption {
	if ops == nil {
		return nil
	}
	var out []*corev3.HeaderValueOption
	for _, k := range sortedMapKeys(ops.GetSet()) {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: ops.GetSet()[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, k := range sortedMapKeys(ops.GetAdd()) {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: ops.GetAdd()[k]},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	return out
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package validate

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trellismesh/trellis/internal/config/field"
	"github.com/trellismesh/trellis/internal/config/hostmatch"
)

// VirtualService checks one VirtualService.
func VirtualService(m Meta, vs *networking.VirtualService) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	// A VirtualService without hosts is a delegate: it is only reached
	// through another VirtualService's http[].delegate.
	delegate := len(vs.Hosts) == 0
	if delegate {
		if len(vs.Gateways) > 0 {
			errs.Add(spec.Child("gateways"), "a VirtualService without hosts is a delegate and takes no gateways: add hosts, or remove gateways")
		}
		if len(vs.Tls) > 0 {
			errs.Add(spec.Child("tls"), "a VirtualService without hosts is a delegate and supports only http routes: add hosts")
		}
		if len(vs.Tcp) > 0 {
			errs.Add(spec.Child("tcp"), "a VirtualService without hosts is a delegate and supports only http routes: add hosts")
		}
	}
	checkGatewayNames(&errs, spec.Child("gateways"), vs.Gateways)
	toGateway := len(vs.Gateways) > 0 && !slices.Contains(vs.Gateways, "mesh")

	hostsOK := true
	for i, h := range vs.Hosts {
		hp := spec.Child("hosts").Index(i)
		if _, err := netip.ParseAddr(h); err == nil {
			continue
		}
		if h == "*" && !toGateway {
			errs.Add(hp, `"*" is only allowed for VirtualServices bound to gateways: name the hosts this applies to`)
			hostsOK = false
			continue
		}
		if msg := hostProblem(h, true); msg != "" {
			errs.Add(hp, "%s", msg)
			hostsOK = false
		}
	}
	if hostsOK {
		for i := range vs.Hosts {
			for j := i + 1; j < len(vs.Hosts); j++ {
				if hostmatch.Overlap(vs.Hosts[i], vs.Hosts[j]) {
					errs.Add(spec.Child("hosts").Index(j), "%q overlaps hosts[%d] %q: list each host once", vs.Hosts[j], i, vs.Hosts[i])
				}
			}
		}
	}
	if len(vs.Http) == 0 && len(vs.Tcp) == 0 && len(vs.Tls) == 0 {
		errs.Add(spec, "no routes: add http, tcp or tls routes")
	}
	for i, r := range vs.Http {
		hp := spec.Child("http").Index(i)
		if r == nil {
			errs.Add(hp, "must not be null")
			continue
		}
		checkHTTPRoute(&errs, hp, r, delegate, toGateway)
	}
	for i, r := range vs.Tls {
		checkTLSRoute(&errs, spec.Child("tls").Index(i), r, vs.Hosts)
	}
	for i, r := range vs.Tcp {
		checkTCPRoute(&errs, spec.Child("tcp").Index(i), r)
	}
	checkExportTo(&errs, spec.Child("exportTo"), m.Namespace, vs.ExportTo, false)
	return errs
}

// checkGatewayNames accepts "mesh", "<namespace>/<name>" and the legacy
// "<name>" or "<name>.<namespace>" forms.
func checkGatewayNames(errs *field.List, p *field.Path, names []string) {
	for i, g := range names {
		gp := p.Index(i)
		if g == "mesh" {
			continue
		}
		ns, name, ok := strings.Cut(g, "/")
		if !ok {
			if !isFQDN(g) {
				errs.Add(gp, "invalid gateway %q: use <namespace>/<name>, or \"mesh\" for sidecars", g)
			}
			continue
		}
		if !isDNS1123Label(ns) {
			errs.Add(gp, "invalid gateway %q: %q is not a valid namespace name", g, ns)
		}
		if !isDNS1123Label(name) {
			errs.Add(gp, "invalid gateway %q: %q is not a valid gateway name", g, name)
		}
	}
}

func checkHTTPRoute(errs *field.List, p *field.Path, r *networking.HTTPRoute, inDelegate, toGateway bool) {
	switch {
	case r.Delegate != nil:
		dp := p.Child("delegate")
		if inDelegate {
			errs.Add(dp, "a delegate VirtualService cannot delegate again")
		}
		if r.Route != nil {
			errs.Add(p.Child("route"), "a route with delegate cannot also have route: the delegate VirtualService routes")
		}
		if r.Redirect != nil {
			errs.Add(p.Child("redirect"), "a route with delegate cannot also have redirect")
		}
		if r.DirectResponse != nil {
			errs.Add(p.Child("directResponse"), "a route with delegate cannot also have directResponse")
		}
		if r.Delegate.Name == "" {
			errs.Append(field.Required(dp.Child("name")))
		} else if !isDNS1123Subdomain(r.Delegate.Name) {
			errs.Add(dp.Child("name"), "%q is not a valid VirtualService name", r.Delegate.Name)
		}
		if r.Delegate.Namespace != "" {
			checkNamespaceName(errs, dp.Child("namespace"), r.Delegate.Namespace)
		}
	case r.Redirect != nil:
		if len(r.Route) > 0 {
			errs.Add(p.Child("route"), "cannot have both route and redirect: keep one")
		}
		if r.DirectResponse != nil {
			errs.Add(p.Child("directResponse"), "cannot have both directResponse and redirect: keep one")
		}
		if r.Fault != nil {
			errs.Add(p.Child("fault"), "cannot have both fault and redirect")
		}
		if r.Rewrite != nil {
			errs.Add(p.Child("rewrite"), "cannot have both rewrite and redirect")
		}
	case r.DirectResponse != nil:
		if len(r.Route) > 0 {
			errs.Add(p.Child("route"), "cannot have both route and directResponse: keep one")
		}
		if r.Fault != nil {
			errs.Add(p.Child("fault"), "cannot have both fault and directResponse")
		}
		if r.Rewrite != nil {
			errs.Add(p.Child("rewrite"), "cannot have both rewrite and directResponse")
		}
	case len(r.Route) == 0:
		errs.Add(p, "needs route, redirect, directResponse or delegate")
	}
	if r.Mirror != nil && len(r.Mirrors) > 0 {
		errs.Add(p.Child("mirrors"), "cannot have both mirror and mirrors: move mirror into mirrors")
	}

	for i, mr := range r.Match {
		checkHTTPMatch(errs, p.Child("match").Index(i), mr, toGateway)
	}
	checkHeaderOps(errs, p.Child("headers"), r.Headers)
	checkCORS(errs, p.Child("corsPolicy"), r.CorsPolicy)
	checkFault(errs, p.Child("fault"), r.Fault)
	//lint:ignore SA1019 users still write the deprecated field
	if mp := r.MirrorPercent; mp.GetValue() > 100 {
		errs.Add(p.Child("mirrorPercent"), "%d is not a percentage: must be in 0..100 (mirrorPercent is deprecated: use mirrorPercentage)", mp.GetValue())
	}
	if r.MirrorPercentage != nil {
		checkPercentValue(errs, p.Child("mirrorPercentage", "value"), r.MirrorPercentage.GetValue())
	}
	if r.Mirror != nil {
		checkDestination(errs, p.Child("mirror"), r.Mirror)
	}
	for i, mp := range r.Mirrors {
		ip := p.Child("mirrors").Index(i)
		if mp == nil {
			errs.Add(ip, "must not be null")
			continue
		}
		if mp.Destination == nil {
			errs.Append(field.Required(ip.Child("destination")))
		} else {
			checkDestination(errs, ip.Child("destination"), mp.Destination)
		}
		if mp.Percentage != nil {
			checkPercentValue(errs, ip.Child("percentage", "value"), mp.Percentage.GetValue())
		}
	}
	checkRedirect(errs, p.Child("redirect"), r.Redirect, r.Match)
	checkDirectResponse(errs, p.Child("directResponse"), r.DirectResponse)
	checkHTTPRetry(errs, p.Child("retries"), r.Retries)
	checkRewrite(errs, p, r.Rewrite, r.Headers)
	checkHTTPRouteDestinations(errs, p.Child("route"), r.Route)
	checkDuration(errs, p.Child("timeout"), r.Timeout)
}

func isDNS1123Subdomain(s string) bool { return len(validation.IsDNS1123Subdomain(s)) == 0 }

// checkStringMatch checks one StringMatch. The decoder already rejects two
// members; an empty {} would match nothing or everything depending on the
// field, so it is rejected where Istio gives it no meaning.
func checkStringMatch(errs *field.List, p *field.Path, sm *networking.StringMatch, emptyPrefixOK bool) {
	if sm == nil {
		return
	}
	switch mt := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		checkStringMatchParts(errs, p, "exact", mt.Exact, emptyPrefixOK)
	case *networking.StringMatch_Prefix:
		checkStringMatchParts(errs, p, "prefix", mt.Prefix, emptyPrefixOK)
	case *networking.StringMatch_Regex:
		checkStringMatchParts(errs, p, "regex", mt.Regex, emptyPrefixOK)
	default:
		checkStringMatchParts(errs, p, "", "", emptyPrefixOK)
	}
}

// jwtClaimHeader is how Istio spells routing on a JWT claim in a header
// match key.
const jwtClaimHeader = "@request.auth.claims"

func checkHTTPMatch(errs *field.List, p *field.Path, mr *networking.HTTPMatchRequest, toGateway bool) {
	if mr == nil {
		errs.Add(p, "must not be null")
		return
	}
	checkStringMatch(errs, p.Child("uri"), mr.Uri, true)
	checkStringMatch(errs, p.Child("scheme"), mr.Scheme, false)
	checkStringMatch(errs, p.Child("method"), mr.Method, false)
	checkStringMatch(errs, p.Child("authority"), mr.Authority, false)
	checkHeaderMatches := func(hp *field.Path, hs map[string]*networking.StringMatch, without bool) {
		for _, k := range sortedKeys(hs) {
			kp := hp.Key(k)
			if strings.HasPrefix(k, jwtClaimHeader) {
				if !toGateway {
					errs.Add(kp, "routing on JWT claims only works on gateways: add spec.gateways")
				}
				if !strings.HasPrefix(k, jwtClaimHeader+".") && !strings.HasPrefix(k, jwtClaimHeader+"[") {
					errs.Add(kp, "write the claim as %s.<claim> or %s[<claim>]", jwtClaimHeader, jwtClaimHeader)
				}
			} else if !isPseudoHeader(k) {
				checkHeaderName(errs, kp, k)
			}
			// An empty {} is Istio's "header is present" match.
			sm := hs[k]
			if sm == nil || sm.GetMatchType() == nil {
				continue
			}
			// In withoutHeaders, regex "*" is a presence match, not RE2.
			if without && sm.GetRegex() == "*" {
				continue
			}
			checkStringMatch(errs, kp, sm, false)
		}
	}
	checkHeaderMatches(p.Child("headers"), mr.Headers, false)
	checkHeaderMatches(p.Child("withoutHeaders"), mr.WithoutHeaders, true)
	for _, k := range sortedKeys(mr.QueryParams) {
		kp := p.Child("queryParams").Key(k)
		if k == "" {
			errs.Add(kp, "query parameter name must not be empty")
		}
		// An empty {} is a presence match, as for headers.
		if sm := mr.QueryParams[k]; sm != nil && sm.GetMatchType() != nil {
			checkStringMatch(errs, kp, sm, false)
		}
	}
	if mr.Port != 0 {
		checkPort(errs, p.Child("port"), mr.Port)
	}
	checkLabels(errs, p.Child("sourceLabels"), mr.SourceLabels)
	checkGatewayNames(errs, p.Child("gateways"), mr.Gateways)
	if mr.SourceNamespace != "" {
		checkNamespaceName(errs, p.Child("sourceNamespace"), mr.SourceNamespace)
	}
}

func isPseudoHeader(k string) bool {
	switch k {
	case ":method", ":scheme", ":authority", ":path", ":status":
		return true
	}
	return false
}

func isAuthorityHeader(k string) bool {
	return strings.EqualFold(k, ":authority") || strings.EqualFold(k, "host")
}

// checkHeaderOps checks header manipulation. Envoy cannot change pseudo
// headers or Host except the request authority, which is set through add or
// set of ":authority"/"host" (or rewrite.authority).
func checkHeaderOps(errs *field.List, p *field.Path, h *networking.Headers) {
	if h == nil {
		return
	}
	req, resp := p.Child("request"), p.Child("response")
	if ops := h.Request; ops != nil {
		for _, kind := range []string{"set", "add"} {
			m := ops.Set
			if kind == "add" {
				m = ops.Add
			}
			for _, k := range sortedKeys(m) {
				kp := req.Child(kind).Key(k)
				if k == "" {
					errs.Add(kp, "header name must not be empty")
				} else if strings.HasPrefix(k, ":") && !isAuthorityHeader(k) {
					errs.Add(kp, "cannot change pseudo-header %q", k)
				}
				checkHeaderValue(errs, kp, m[k])
			}
		}
		for i, k := range ops.Remove {
			checkRemovableHeader(errs, req.Child("remove").Index(i), k)
		}
	}
	if ops := h.Response; ops != nil {
		for _, kind := range []string{"set", "add"} {
			m := ops.Set
			if kind == "add" {
				m = ops.Add
			}
			for _, k := range sortedKeys(m) {
				kp := resp.Child(kind).Key(k)
				checkRemovableHeader(errs, kp, k)
				checkHeaderValue(errs, kp, m[k])
			}
		}
		for i, k := range ops.Remove {
			checkRemovableHeader(errs, resp.Child("remove").Index(i), k)
		}
	}
}

func checkRemovableHeader(errs *field.List, p *field.Path, k string) {
	switch {
	case k == "":
		errs.Add(p, "header name must not be empty")
	case strings.EqualFold(k, "host"):
		errs.Add(p, "cannot change the Host header here: use rewrite.authority")
	case strings.HasPrefix(k, ":"):
		errs.Add(p, "cannot change pseudo-header %q", k)
	}
}

var corsMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodConnect: true,
	http.MethodOptions: true, http.MethodTrace: true, "*": true,
}

func checkCORS(errs *field.List, p *field.Path, c *networking.CorsPolicy) {
	if c == nil {
		return
	}
	for i, o := range c.AllowOrigins {
		op := p.Child("allowOrigins").Index(i)
		if o == nil || (o.GetExact() == "" && o.GetPrefix() == "" && o.GetRegex() == "") {
			errs.Add(op, "set one of exact, prefix or regex to a non-empty origin")
			continue
		}
		checkStringMatch(errs, op, o, false)
	}
	for i, mth := range c.AllowMethods {
		if !corsMethods[mth] {
			errs.Add(p.Child("allowMethods").Index(i), "%q is not an HTTP method (use upper case, e.g. GET, POST, or *)", mth)
		}
	}
	for i, h := range c.AllowHeaders {
		if h != "*" {
			checkHeaderName(errs, p.Child("allowHeaders").Index(i), h)
		}
	}
	for i, h := range c.ExposeHeaders {
		if h != "*" {
			checkHeaderName(errs, p.Child("exposeHeaders").Index(i), h)
		}
	}
	if c.MaxAge != nil {
		checkDuration(errs, p.Child("maxAge"), c.MaxAge)
		if c.MaxAge.Nanos != 0 {
			errs.Add(p.Child("maxAge"), "browsers take whole seconds: use a whole number of seconds")
		}
	}
}

// grpcStatuses are the gRPC status names fault injection accepts.
var grpcStatuses = map[string]bool{
	"OK": true, "CANCELLED": true, "UNKNOWN": true, "INVALID_ARGUMENT": true,
	"DEADLINE_EXCEEDED": true, "NOT_FOUND": true, "ALREADY_EXISTS": true,
	"PERMISSION_DENIED": true, "RESOURCE_EXHAUSTED": true, "FAILED_PRECONDITION": true,
	"ABORTED": true, "OUT_OF_RANGE": true, "UNIMPLEMENTED": true, "INTERNAL": true,
	"UNAVAILABLE": true, "DATA_LOSS": true, "UNAUTHENTICATED": true,
}

func checkFault(errs *field.List, p *field.Path, f *networking.HTTPFaultInjection) {
	if f == nil {
		return
	}
	if f.Abort == nil && f.Delay == nil {
		errs.Add(p, "set abort, delay or both")
	}
	if a := f.Abort; a != nil {
		ap := p.Child("abort")
		if a.Percentage != nil {
			checkFaultPercent(errs, ap.Child("percentage", "value"), a.Percentage.GetValue())
		}
		switch et := a.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			checkHTTPStatus(errs, ap.Child("httpStatus"), int64(et.HttpStatus))
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if !grpcStatuses[et.GrpcStatus] {
				errs.Add(ap.Child("grpcStatus"), "unknown gRPC status %q: use a name such as UNAVAILABLE or NOT_FOUND", et.GrpcStatus)
			}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			errs.Add(ap.Child("http2Error"), "not supported: use httpStatus or grpcStatus")
		default:
			errs.Add(ap, "set httpStatus or grpcStatus")
		}
	}
	if d := f.Delay; d != nil {
		dp := p.Child("delay")
		if d.Percentage != nil {
			checkFaultPercent(errs, dp.Child("percentage", "value"), d.Percentage.GetValue())
		}
		//lint:ignore SA1019 users still write the deprecated field
		checkPercent(errs, dp.Child("percent"), d.Percent)
		switch dt := d.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			checkRequiredDuration(errs, dp.Child("fixedDelay"), dt.FixedDelay)
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			errs.Add(dp.Child("exponentialDelay"), "not supported: use fixedDelay")
		default:
			errs.Add(dp, "set fixedDelay")
		}
	}
}

// checkFaultPercent is checkPercentValue for fault injection, which Envoy
// counts per million: a positive value under 0.0001 would never fire.
func checkFaultPercent(errs *field.List, p *field.Path, v float64) {
	if v > 0 && v < 0.0001 {
		errs.Add(p, "%g is too small: Envoy counts faults per million, so use 0 or at least 0.0001", v)
		return
	}
	checkPercentValue(errs, p, v)
}

func checkHTTPStatus(errs *field.List, p *field.Path, s int64) {
	if s < 200 || s > 599 {
		errs.Add(p, "HTTP status %d must be in 200..599", s)
	}
}

func checkDestination(errs *field.List, p *field.Path, d *networking.Destination) {
	if d.Host == "" {
		errs.Append(field.Required(p.Child("host")))
	} else {
		checkHost(errs, p.Child("host"), d.Host, false)
	}
	if d.Subset != "" && !isDNS1123Label(d.Subset) {
		errs.Add(p.Child("subset"), "%q is not a valid subset name (lowercase letters, digits and '-', at most 63)", d.Subset)
	}
	if d.Port != nil {
		checkPort(errs, p.Child("port", "number"), d.Port.Number)
	}
}

func checkRedirect(errs *field.List, p *field.Path, r *networking.HTTPRedirect, matches []*networking.HTTPMatchRequest) {
	if r == nil {
		return
	}
	if r.Uri != "" && r.PrefixRewrite != "" {
		errs.Add(p, "set only one of uri and prefixRewrite")
	}
	if r.PrefixRewrite != "" {
		for i, mr := range matches {
			if mr.GetUri() != nil && mr.GetUri().GetMatchType() != nil {
				if _, ok := mr.Uri.MatchType.(*networking.StringMatch_Prefix); !ok {
					errs.Add(p.Child("prefixRewrite"), "needs every uri match to be a prefix match, but match[%d].uri is not", i)
					break
				}
			}
		}
	}
	if r.Uri == "" && r.PrefixRewrite == "" && r.Authority == "" && r.RedirectPort == nil && r.Scheme == "" {
		errs.Add(p, "set at least one of uri, prefixRewrite, authority, scheme, port or derivePort")
	}
	if r.RedirectCode != 0 && (r.RedirectCode < 300 || r.RedirectCode > 399) {
		errs.Add(p.Child("redirectCode"), "%d is not a redirect code: use 3xx, such as 301", r.RedirectCode)
	}
	if r.Scheme != "" && r.Scheme != "http" && r.Scheme != "https" {
		errs.Add(p.Child("scheme"), `must be "http" or "https", not %q`, r.Scheme)
	}
	if pt, ok := r.RedirectPort.(*networking.HTTPRedirect_Port); ok {
		checkPort(errs, p.Child("port"), pt.Port)
	}
}

// maxDirectResponseBody mirrors Istio: bodies travel in every push.
const maxDirectResponseBody = 1 << 20

func checkDirectResponse(errs *field.List, p *field.Path, d *networking.HTTPDirectResponse) {
	if d == nil {
		return
	}
	checkHTTPStatus(errs, p.Child("status"), int64(d.Status))
	if d.Body != nil {
		size := len(d.Body.GetString_()) + len(d.Body.GetBytes())
		if size > maxDirectResponseBody {
			errs.Add(p.Child("body"), "body is %d bytes: at most 1 MiB is allowed", size)
		}
	}
}

// envoyRetryOn are Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on
// policies, which Istio passes through from retryOn.
var envoyRetryOn = setOf(
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
	"envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
	"retriable-headers", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
)

func checkHTTPRetry(errs *field.List, p *field.Path, r *networking.HTTPRetry) {
	if r == nil {
		return
	}
	if r.Attempts < 0 {
		errs.Add(p.Child("attempts"), "must be >= 0")
	}
	if r.Attempts == 0 && (r.PerTryTimeout != nil || r.RetryOn != "" || r.RetryRemoteLocalities != nil) {
		errs.Add(p.Child("attempts"), "attempts 0 disables retries, but perTryTimeout, retryOn or retryRemoteLocalities is set: set attempts > 0, or remove them")
	}
	checkDuration(errs, p.Child("perTryTimeout"), r.PerTryTimeout)
	checkDuration(errs, p.Child("backoff"), r.Backoff)
	if r.RetryOn != "" {
		for tok := range strings.SplitSeq(r.RetryOn, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" {
				errs.Add(p.Child("retryOn"), "%q has an empty entry: separate policies with single commas", r.RetryOn)
				continue
			}
			if envoyRetryOn[tok] {
				continue
			}
			if n, err := strconv.Atoi(tok); err == nil && http.StatusText(n) != "" {
				continue
			}
			errs.Add(p.Child("retryOn"), "unknown retry policy %q: use Envoy's (5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, ...), gRPC's (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) or an HTTP status code", tok)
		}
	}
}

// checkRewrite takes the route's path: the authority may be rewritten in
// rewrite or in headers, and the conflict is reported where it occurs.
func checkRewrite(errs *field.List, route *field.Path, rw *networking.HTTPRewrite, headers *networking.Headers) {
	p := route.Child("rewrite")
	authority := ""
	if rw != nil {
		authority = rw.Authority
		if rw.Uri != "" && rw.UriRegexRewrite != nil {
			errs.Add(p, "set only one of uri and uriRegexRewrite")
		}
		if rw.Uri == "" && rw.UriRegexRewrite == nil && rw.Authority == "" {
			errs.Add(p, "set at least one of uri, uriRegexRewrite and authority")
		}
		if rr := rw.UriRegexRewrite; rr != nil {
			rp := p.Child("uriRegexRewrite")
			if rr.Match == "" {
				errs.Append(field.Required(rp.Child("match")))
			} else {
				checkRegex(errs, rp.Child("match"), rr.Match)
			}
			if rr.Rewrite == "" {
				errs.Append(field.Required(rp.Child("rewrite")))
			}
		}
	}
	req := headers.GetRequest()
	for _, kind := range []string{"set", "add"} {
		m := req.GetSet()
		if kind == "add" {
			m = req.GetAdd()
		}
		for _, k := range sortedKeys(m) {
			if !isAuthorityHeader(k) {
				continue
			}
			if authority != "" {
				errs.Add(route.Child("headers", "request", kind).Key(k), "the authority is already rewritten to %q: set it in one place only", authority)
				continue
			}
			authority = m[k]
		}
	}
}

func checkHTTPRouteDestinations(errs *field.List, p *field.Path, ds []*networking.HTTPRouteDestination) {
	w := weights{errs: errs, p: p}
	for i, d := range ds {
		dp := p.Index(i)
		if d == nil {
			errs.Add(dp, "must not be null")
			continue
		}
		w.destination(dp, d.Destination)
		checkHeaderOps(errs, dp.Child("headers"), d.Headers)
		w.weight(dp, d.Weight)
	}
	w.done(len(ds))
}

func checkRouteDestinations(errs *field.List, p *field.Path, ds []*networking.RouteDestination) {
	w := weights{errs: errs, p: p}
	for i, d := range ds {
		dp := p.Index(i)
		if d == nil {
			errs.Add(dp, "must not be null")
			continue
		}
		w.destination(dp, d.Destination)
		w.weight(dp, d.Weight)
	}
	w.done(len(ds))
}

// weights checks the destinations of one route (HTTP, TLS or TCP) and
// their relative weights, which Istio requires not to be all zero.
type weights struct {
	errs  *field.List
	p     *field.Path
	total int64
}

func (w *weights) destination(dp *field.Path, dest *networking.Destination) {
	if dest == nil {
		w.errs.Append(field.Required(dp.Child("destination")))
	} else {
		checkDestination(w.errs, dp.Child("destination"), dest)
	}
}

func (w *weights) weight(dp *field.Path, weight int32) {
	if weight < 0 {
		w.errs.Add(dp.Child("weight"), "must be >= 0")
	}
	w.total += int64(weight)
}

func (w *weights) done(n int) {
	if n > 1 && w.total == 0 {
		w.errs.Add(w.p, "all weights are 0: give at least one destination a positive weight (weights are relative)")
	}
}

func checkTLSRoute(errs *field.List, p *field.Path, r *networking.TLSRoute, vsHosts []string) {
	if r == nil {
		errs.Add(p, "must not be null")
		return
	}
	if len(r.Match) == 0 {
		errs.Add(p.Child("match"), "required: TLS routes match on sniHosts")
	}
	for i, mr := range r.Match {
		mp := p.Child("match").Index(i)
		if mr == nil {
			errs.Add(mp, "must not be null")
			continue
		}
		if len(mr.SniHosts) == 0 {
			errs.Add(mp.Child("sniHosts"), "required: list at least one SNI host")
		}
		for j, h := range mr.SniHosts {
			hp := mp.Child("sniHosts").Index(j)
			if msg := hostProblem(h, true); msg != "" {
				errs.Add(hp, "%s", msg)
				continue
			}
			covered := false
			for _, vh := range vsHosts {
				if hostmatch.Within(h, vh) {
					covered = true
					break
				}
			}
			if !covered {
				errs.Add(hp, "SNI host %q is not covered by any of the VirtualService hosts [%s]", h, strings.Join(vsHosts, ", "))
			}
		}
		checkL4Match(errs, mp, mr.DestinationSubnets, mr.Port, mr.SourceLabels, mr.Gateways, mr.SourceNamespace)
	}
	checkL4Routes(errs, p.Child("route"), r.Route)
}

func checkTCPRoute(errs *field.List, p *field.Path, r *networking.TCPRoute) {
	if r == nil {
		errs.Add(p, "must not be null")
		return
	}
	for i, mr := range r.Match {
		mp := p.Child("match").Index(i)
		if mr == nil {
			errs.Add(mp, "must not be null")
			continue
		}
		checkL4Match(errs, mp, mr.DestinationSubnets, mr.Port, mr.SourceLabels, mr.Gateways, mr.SourceNamespace)
	}
	checkL4Routes(errs, p.Child("route"), r.Route)
}

// checkL4Match checks the connection attributes TLS and TCP matches share.
func checkL4Match(errs *field.List, mp *field.Path, subnets []string, port uint32, sourceLabels map[string]string, gateways []string, sourceNamespace string) {
	for j, s := range subnets {
		checkIPOrCIDR(errs, mp.Child("destinationSubnets").Index(j), s)
	}
	if port != 0 {
		checkPort(errs, mp.Child("port"), port)
	}
	checkLabels(errs, mp.Child("sourceLabels"), sourceLabels)
	checkGatewayNames(errs, mp.Child("gateways"), gateways)
	if sourceNamespace != "" {
		checkNamespaceName(errs, mp.Child("sourceNamespace"), sourceNamespace)
	}
}

// checkL4Routes checks the destinations of a TLS or TCP route: required,
// and valid as any route destination.
func checkL4Routes(errs *field.List, p *field.Path, route []*networking.RouteDestination) {
	if len(route) == 0 {
		errs.Append(field.Required(p))
	}
	checkRouteDestinations(errs, p, route)
}

// DestinationRule checks one DestinationRule.
func DestinationRule(m Meta, dr *networking.DestinationRule) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	if dr.Host == "" {
		errs.Append(field.Required(spec.Child("host")))
	} else {
		checkHost(&errs, spec.Child("host"), dr.Host, true)
	}
	checkTrafficPolicy(&errs, spec.Child("trafficPolicy"), m.Namespace, dr.TrafficPolicy)
	seen := map[string]int{}
	for i, s := range dr.Subsets {
		sp := spec.Child("subsets").Index(i)
		if s == nil {
			errs.Add(sp, "must not be null")
			continue
		}
		switch {
		case s.Name == "":
			errs.Append(field.Required(sp.Child("name")))
		case !isDNS1123Label(s.Name):
			errs.Add(sp.Child("name"), "%q is not a valid subset name (lowercase letters, digits and '-', at most 63)", s.Name)
		}
		if j, dup := seen[s.Name]; dup && s.Name != "" {
			errs.Add(sp.Child("name"), "duplicate subset name %q (also subsets[%d]): subset names must be unique", s.Name, j)
		} else {
			seen[s.Name] = i
		}
		checkLabels(&errs, sp.Child("labels"), s.Labels)
		checkTrafficPolicy(&errs, sp.Child("trafficPolicy"), m.Namespace, s.TrafficPolicy)
	}
	checkExportTo(&errs, spec.Child("exportTo"), m.Namespace, dr.ExportTo, false)
	if dr.WorkloadSelector != nil {
		checkWorkloadSelector(&errs, spec.Child("workloadSelector"), dr.WorkloadSelector)
		// A selector-scoped rule only makes sense for this namespace's
		// workloads.
		for i, e := range dr.ExportTo {
			if e != "." && e != m.Namespace {
				errs.Add(spec.Child("exportTo").Index(i), "a DestinationRule with workloadSelector can only be exported to its own namespace (\".\")")
			}
		}
	}
	checkLoadBalancerAnnotation(&errs, m.Annotations, dr)
	return errs
}

// checkLoadBalancerAnnotation checks trellis.io/load-balancer: PEAK_EWMA
// weighs least-request by latency, so every load balancer the rule sets
// (top level, port level, subsets) must be LEAST_REQUEST or left out.
func checkLoadBalancerAnnotation(errs *field.List, annotations map[string]string, dr *networking.DestinationRule) {
	v, ok := annotations[LoadBalancerAnnotation]
	if !ok {
		return
	}
	p := field.NewPath("metadata", "annotations").Key(LoadBalancerAnnotation)
	if v != PeakEWMA {
		errs.Add(p, "unknown value %q: must be %s", v, PeakEWMA)
		return
	}
	check := func(at *field.Path, lb *networking.LoadBalancerSettings) {
		var other string
		switch {
		case lb == nil:
		case lb.GetConsistentHash() != nil:
			other = "consistentHash"
		case lb.GetSimple() != networking.LoadBalancerSettings_UNSPECIFIED &&
			lb.GetSimple() != networking.LoadBalancerSettings_LEAST_REQUEST &&
			lb.GetSimple().String() != "LEAST_CONN": // Istio's deprecated name for LEAST_REQUEST
			other = lb.GetSimple().String()
		}
		if other == "" {
			return
		}
		where := ""
		if s := at.String(); s != "spec.trafficPolicy.loadBalancer" {
			where = " at " + s
		}
		errs.Add(p, "%s needs loadBalancer LEAST_REQUEST (or none), not %s%s", PeakEWMA, other, where)
	}
	policy := func(at *field.Path, tp *networking.TrafficPolicy) {
		check(at.Child("loadBalancer"), tp.GetLoadBalancer())
		for i, pl := range tp.GetPortLevelSettings() {
			check(at.Child("portLevelSettings").Index(i).Child("loadBalancer"), pl.GetLoadBalancer())
		}
	}
	spec := field.NewPath("spec")
	policy(spec.Child("trafficPolicy"), dr.GetTrafficPolicy())
	for i, s := range dr.GetSubsets() {
		policy(spec.Child("subsets").Index(i).Child("trafficPolicy"), s.GetTrafficPolicy())
	}
}

// ServiceEntry checks one ServiceEntry.
func ServiceEntry(m Meta, se *networking.ServiceEntry) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	if se.WorkloadSelector != nil {
		checkNetworkingSelector(&errs, spec.Child("workloadSelector"), se.WorkloadSelector)
		if len(se.Endpoints) > 0 {
			errs.Add(spec.Child("endpoints"), "set only one of workloadSelector and endpoints")
		}
	}
	if len(se.Hosts) == 0 {
		errs.Add(spec.Child("hosts"), "required: list at least one host")
	}
	for i, h := range se.Hosts {
		checkHost(&errs, spec.Child("hosts").Index(i), h, false)
	}
	cidr := false
	for i, a := range se.Addresses {
		cidr = cidr || strings.Contains(a, "/")
		checkIPOrCIDR(&errs, spec.Child("addresses").Index(i), a)
	}
	res := se.Resolution
	if cidr && res != networking.ServiceEntry_NONE && res != networking.ServiceEntry_STATIC {
		errs.Add(spec.Child("addresses"), "CIDR addresses need resolution NONE or STATIC, not %s", res)
	}

	portNames := map[string]bool{}
	portNumbers := map[uint32]int{}
	nameIndex := map[string]int{}
	for i, pt := range se.Ports {
		pp := spec.Child("ports").Index(i)
		if pt == nil {
			errs.Add(pp, "must not be null")
			continue
		}
		checkPort(&errs, pp.Child("number"), pt.Number)
		if j, dup := portNumbers[pt.Number]; dup {
			errs.Add(pp.Child("number"), "port %d is already defined in ports[%d]", pt.Number, j)
		} else {
			portNumbers[pt.Number] = i
		}
		if pt.Name == "" {
			errs.Append(field.Required(pp.Child("name")))
		} else {
			checkPortName(&errs, pp.Child("name"), pt.Name)
			if j, dup := nameIndex[pt.Name]; dup {
				errs.Add(pp.Child("name"), "port name %q is already used by ports[%d]", pt.Name, j)
			} else {
				nameIndex[pt.Name] = i
			}
		}
		portNames[pt.Name] = true
		checkProtocol(&errs, pp.Child("protocol"), pt.Protocol, false)
		if pt.TargetPort != 0 {
			checkPort(&errs, pp.Child("targetPort"), pt.TargetPort)
		}
	}

	eps := spec.Child("endpoints")
	switch res {
	case networking.ServiceEntry_NONE:
		if len(se.Endpoints) > 0 {
			errs.Add(eps, "resolution NONE takes no endpoints: use STATIC or DNS, or remove them")
		}
	case networking.ServiceEntry_STATIC:
		if len(se.Endpoints) == 0 && se.WorkloadSelector == nil {
			errs.Add(eps, "resolution STATIC needs endpoints (IP addresses) or a workloadSelector")
		}
		for i, ep := range se.Endpoints {
			if ep == nil {
				errs.Add(eps.Index(i), "must not be null")
				continue
			}
			checkEndpoint(&errs, eps.Index(i), ep, portNames, false)
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.Endpoints) == 0 {
			for i, h := range se.Hosts {
				if strings.HasPrefix(h, "*") {
					errs.Add(spec.Child("hosts").Index(i), "resolution %s with no endpoints resolves the hosts themselves, so %q must not be a wildcard: add endpoints, or use DYNAMIC_DNS", res, h)
				}
			}
		}
		if res == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.Endpoints) > 1 {
			errs.Add(eps, "resolution DNS_ROUND_ROBIN takes at most one endpoint: use DNS for several")
		}
		for i, ep := range se.Endpoints {
			if ep == nil {
				errs.Add(eps.Index(i), "must not be null")
				continue
			}
			checkEndpoint(&errs, eps.Index(i), ep, portNames, true)
		}
	case networking.ServiceEntry_DYNAMIC_DNS:
		for i, h := range se.Hosts {
			if !strings.HasPrefix(h, "*") {
				errs.Add(spec.Child("hosts").Index(i), "resolution DYNAMIC_DNS needs wildcard hosts such as \"*.example.com\"")
			}
		}
		if len(se.Addresses) > 0 {
			errs.Add(spec.Child("addresses"), "resolution DYNAMIC_DNS takes no addresses: destinations come from the hosts")
		}
		if len(se.Endpoints) > 0 {
			errs.Add(eps, "resolution DYNAMIC_DNS takes no endpoints: destinations come from the hosts")
		}
		for i, pt := range se.Ports {
			if pt == nil {
				continue
			}
			switch strings.ToLower(pt.Protocol) {
			case "http", "tls", "grpc", "http2":
			default:
				errs.Add(spec.Child("ports").Index(i).Child("protocol"), "resolution DYNAMIC_DNS supports HTTP, HTTP2, GRPC and TLS ports only")
			}
		}
	}
	// With several hosts and a plain TCP port nothing tells the hosts
	// apart; HTTP has the authority and TLS the SNI.
	if res != networking.ServiceEntry_NONE && len(se.Hosts) > 1 {
		for i, pt := range se.Ports {
			if pt != nil && !isHTTPProtocol(pt.Protocol) && !isTLSProtocol(pt.Protocol) {
				errs.Add(spec.Child("ports").Index(i).Child("protocol"), "several hosts share this port, but protocol %q cannot tell them apart: use HTTP or TLS, one host per ServiceEntry, or resolution NONE", pt.Protocol)
				break
			}
		}
	}
	for i, san := range se.SubjectAltNames {
		if san == "" {
			errs.Add(spec.Child("subjectAltNames").Index(i), "must not be empty")
		}
	}
	checkExportTo(&errs, spec.Child("exportTo"), m.Namespace, se.ExportTo, true)
	return errs
}

// unixPrefix marks a Unix domain socket address in Istio's APIs.
const unixPrefix = "unix://"

func checkUnixAddress(errs *field.List, p *field.Path, addr string) {
	if addr == "" {
		errs.Add(p, "unix socket path must not be empty")
		return
	}
	if strings.HasPrefix(addr, "@") {
		return
	}
	if !strings.HasPrefix(addr, "/") || strings.HasSuffix(addr, "/") {
		errs.Add(p, "%q is not an absolute path to a socket file", addr)
	}
}

// checkEndpoint checks a WorkloadEntry, on its own (servicePorts nil) or
// inside a ServiceEntry, where its ports must name the service's ports.
func checkEndpoint(errs *field.List, p *field.Path, we *networking.WorkloadEntry, servicePorts map[string]bool, allowFQDN bool) {
	addr := we.Address
	ap := p.Child("address")
	switch {
	case addr == "":
		if we.Network == "" {
			errs.Add(ap, "required (it may only be left out when network is set, for a workload behind a network gateway)")
		}
	case strings.HasPrefix(addr, unixPrefix):
		checkUnixAddress(errs, ap, strings.TrimPrefix(addr, unixPrefix))
		if len(we.Ports) > 0 {
			errs.Add(p.Child("ports"), "a unix socket endpoint takes no ports")
		}
		if servicePorts != nil && len(servicePorts) != 1 {
			errs.Add(ap, "a unix socket endpoint needs a ServiceEntry with exactly one port")
		}
	default:
		if _, err := netip.ParseAddr(addr); err == nil {
			break
		}
		if !allowFQDN {
			errs.Add(ap, "%q is not an IP address: resolution STATIC needs IP endpoints (use DNS for host names)", addr)
		} else if !isFQDN(addr) {
			errs.Add(ap, "%q is neither an IP address nor a host name", addr)
		}
	}
	for _, name := range sortedKeys(we.Ports) {
		pp := p.Child("ports").Key(name)
		if servicePorts != nil && !servicePorts[name] {
			errs.Add(pp, "port name %q is not one of the ServiceEntry's ports", name)
		}
		checkPortName(errs, pp, name)
		checkPort(errs, pp, we.Ports[name])
	}
	checkLabels(errs, p.Child("labels"), we.Labels)
	if we.ServiceAccount != "" && !isDNS1123Subdomain(we.ServiceAccount) {
		errs.Add(p.Child("serviceAccount"), "%q is not a valid service account name", we.ServiceAccount)
	}
}

// WorkloadEntry checks one WorkloadEntry.
func WorkloadEntry(m Meta, we *networking.WorkloadEntry) field.List {
	var errs field.List
	checkEndpoint(&errs, field.NewPath("spec"), we, nil, true)
	return errs
}

// checkNetworkingSelector checks the networking API's selector (labels,
// not matchLabels). Istio warns about an empty one; it is an error here as
// for the security selector.
func checkNetworkingSelector(errs *field.List, p *field.Path, s *networking.WorkloadSelector) {
	if len(s.Labels) == 0 {
		errs.Add(p.Child("labels"), "an empty selector selects every workload in the namespace: add labels, or remove workloadSelector")
		return
	}
	checkLabels(errs, p.Child("labels"), s.Labels)
}

// Sidecar checks one Sidecar.
func Sidecar(m Meta, sc *networking.Sidecar) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	if sc.WorkloadSelector != nil {
		checkNetworkingSelector(&errs, spec.Child("workloadSelector"), sc.WorkloadSelector)
	}
	if len(sc.Egress) == 0 && len(sc.Ingress) == 0 && sc.OutboundTrafficPolicy == nil && sc.InboundConnectionPool == nil {
		errs.Add(spec, "empty Sidecar: set egress, ingress, outboundTrafficPolicy or inboundConnectionPool")
	}

	ports := map[uint32]int{}
	for i, in := range sc.Ingress {
		ip := spec.Child("ingress").Index(i)
		if in == nil {
			errs.Add(ip, "must not be null")
			continue
		}
		if in.Port == nil {
			errs.Append(field.Required(ip.Child("port")))
			continue
		}
		pp := ip.Child("port")
		checkSidecarPort(&errs, pp, in.Port)
		checkPort(&errs, pp.Child("number"), in.Port.Number)
		if in.Bind != "" {
			checkIP(&errs, ip.Child("bind"), in.Bind)
		}
		if j, dup := ports[in.Port.Number]; dup {
			errs.Add(pp.Child("number"), "port %d is already used by ingress[%d]", in.Port.Number, j)
		} else {
			ports[in.Port.Number] = i
		}
		if in.DefaultEndpoint != "" {
			checkDefaultEndpoint(&errs, ip.Child("defaultEndpoint"), in.DefaultEndpoint)
		}
		if t := in.Tls; t != nil {
			tp := ip.Child("tls")
			if len(t.SubjectAltNames) > 0 {
				errs.Add(tp.Child("subjectAltNames"), "not supported for sidecar ingress")
			}
			if t.HttpsRedirect {
				errs.Add(tp.Child("httpsRedirect"), "not supported for sidecar ingress")
			}
			if t.CredentialName != "" {
				errs.Add(tp.Child("credentialName"), "not supported for sidecar ingress: use serverCertificate and privateKey")
			}
			if len(t.CredentialNames) > 0 {
				errs.Add(tp.Child("credentialNames"), "not supported for sidecar ingress: use serverCertificate and privateKey")
			}
			if len(t.TlsCertificates) > 0 {
				errs.Add(tp.Child("tlsCertificates"), "not supported for sidecar ingress: use serverCertificate and privateKey")
			}
			if t.Mode == networking.ServerTLSSettings_ISTIO_MUTUAL || t.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
				errs.Add(tp.Child("mode"), "%s is not allowed for sidecar ingress", t.Mode)
			}
			if !isTLSProtocol(in.Port.Protocol) {
				errs.Add(tp, "TLS settings need port protocol HTTPS or TLS, not %q", in.Port.Protocol)
			}
			checkServerTLS(&errs, tp, t)
		}
		checkConnectionPool(&errs, ip.Child("connectionPool"), in.ConnectionPool)
	}
	checkConnectionPool(&errs, spec.Child("inboundConnectionPool"), sc.InboundConnectionPool)

	ports = map[uint32]int{}
	sockets := map[string]int{}
	for i, eg := range sc.Egress {
		ep := spec.Child("egress").Index(i)
		if eg == nil {
			errs.Add(ep, "must not be null")
			continue
		}
		if eg.Port == nil {
			// The catch-all listener takes every port not listed, so it
			// must come last and there can be one.
			if i != len(sc.Egress)-1 {
				errs.Add(ep, "the egress listener without a port catches everything else: move it to the end, and keep only one")
			}
		} else {
			pp := ep.Child("port")
			checkSidecarPort(&errs, pp, eg.Port)
			if eg.Port.Number == 0 {
				if !strings.HasPrefix(eg.Bind, unixPrefix) {
					errs.Add(pp.Child("number"), "port 0 is only for a unix socket listener: set bind to unix:///path, or give a port in 1..65535")
				} else {
					checkUnixAddress(&errs, ep.Child("bind"), strings.TrimPrefix(eg.Bind, unixPrefix))
					if j, dup := sockets[eg.Bind]; dup {
						errs.Add(ep.Child("bind"), "unix socket %q is already used by egress[%d]", eg.Bind, j)
					} else {
						sockets[eg.Bind] = i
					}
				}
				if eg.CaptureMode != networking.CaptureMode_DEFAULT && eg.CaptureMode != networking.CaptureMode_NONE {
					errs.Add(ep.Child("captureMode"), "must be DEFAULT or NONE for a unix socket listener")
				}
			} else {
				checkPort(&errs, pp.Child("number"), eg.Port.Number)
				if eg.Bind != "" {
					checkIP(&errs, ep.Child("bind"), eg.Bind)
				}
				if j, dup := ports[eg.Port.Number]; dup {
					errs.Add(pp.Child("number"), "port %d is already used by egress[%d]", eg.Port.Number, j)
				} else {
					ports[eg.Port.Number] = i
				}
			}
		}
		if len(eg.Hosts) == 0 {
			errs.Add(ep.Child("hosts"), `required: list hosts as "<namespace>/<host>", e.g. "./*" or "istio-system/*"`)
		}
		for j, h := range eg.Hosts {
			checkNamespacedHost(&errs, ep.Child("hosts").Index(j), h, false)
		}
	}

	if tp := sc.OutboundTrafficPolicy; tp != nil && tp.EgressProxy != nil {
		pp := spec.Child("outboundTrafficPolicy")
		if tp.Mode != networking.OutboundTrafficPolicy_ALLOW_ANY {
			errs.Add(pp.Child("egressProxy"), "egressProxy needs mode ALLOW_ANY")
		}
		xp := pp.Child("egressProxy")
		if tp.EgressProxy.Host == "" {
			errs.Append(field.Required(xp.Child("host")))
		} else if !isFQDN(tp.EgressProxy.Host) {
			errs.Add(xp.Child("host"), "%q is not a host name", tp.EgressProxy.Host)
		}
		if tp.EgressProxy.Port == nil {
			errs.Append(field.Required(xp.Child("port")))
		} else {
			checkPort(&errs, xp.Child("port", "number"), tp.EgressProxy.Port.Number)
		}
		if s := tp.EgressProxy.Subset; s != "" && !isDNS1123Label(s) {
			errs.Add(xp.Child("subset"), "%q is not a valid subset name", s)
		}
	}
	return errs
}

func checkSidecarPort(errs *field.List, p *field.Path, sp *networking.SidecarPort) {
	if sp.Name != "" {
		checkPortName(errs, p.Child("name"), sp.Name)
	}
	checkProtocol(errs, p.Child("protocol"), sp.Protocol, false)
	//lint:ignore SA1019 Istio rejects the deprecated field here
	if sp.TargetPort != 0 {
		errs.Add(p.Child("targetPort"), "has no effect on a Sidecar: remove it")
	}
}

// checkDefaultEndpoint accepts what Istio does: a loopback or any address
// with a port, or a unix socket.
func checkDefaultEndpoint(errs *field.List, p *field.Path, ep string) {
	if after, ok := strings.CutPrefix(ep, unixPrefix); ok {
		checkUnixAddress(errs, p, after)
		return
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		errs.Add(p, "%q must be 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix:///path", ep)
		return
	}
	switch host {
	case "", "127.0.0.1", "0.0.0.0", "::1", "::":
	default:
		errs.Add(p, "%q must be 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix:///path", ep)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		errs.Add(p, "port %q must be a number in 1..65535", port)
	}
}

// checkNamespacedHost checks a "<namespace>/<host>" entry of a Sidecar
// egress listener or a Gateway server. Gateways also take a bare host
// (meaning any namespace) and IP addresses.
func checkNamespacedHost(errs *field.List, p *field.Path, h string, gateway bool) {
	ns, host, ok := strings.Cut(h, "/")
	if !ok {
		if !gateway {
			errs.Add(p, `%q must be "<namespace>/<host>", e.g. "./*", "istio-system/*" or "*/%s"`, h, h)
			return
		}
		host = h
	} else {
		if ns == "" || host == "" {
			errs.Add(p, `%q must be "<namespace>/<host>" with both parts set`, h)
			return
		}
		n := ns
		if !gateway {
			// "~ns" excludes a namespace in a Sidecar.
			n = strings.TrimPrefix(ns, "~")
		}
		if n != "" && n != "*" && n != "." && !isDNS1123Label(n) {
			errs.Add(p, `invalid namespace %q in %q: use a namespace name, "*" (any) or "." (this one)`, ns, h)
		}
	}
	if host == "*" {
		return
	}
	if gateway {
		if _, err := netip.ParseAddr(host); err == nil {
			return
		}
	}
	if msg := hostProblem(host, false); msg != "" {
		errs.Add(p, "%s", msg)
		return
	}
	if !strings.Contains(host, ".") {
		errs.Add(p, "short name %q is not allowed here: use the full name, e.g. %s.<namespace>.svc.cluster.local", host, host)
	}
}

// Gateway checks one Istio Gateway.
func Gateway(m Meta, gw *networking.Gateway) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	if m.Name != "" && !isDNS1123Label(m.Name) {
		errs.Add(field.NewPath("metadata", "name"), "a Gateway name must be a DNS label (no dots), as VirtualServices refer to <namespace>/<name>")
	}
	checkLabels(&errs, spec.Child("selector"), gw.Selector)
	if len(gw.Servers) == 0 {
		errs.Add(spec.Child("servers"), "required: add at least one server")
	}
	names := map[string]int{}
	for i, s := range gw.Servers {
		sp := spec.Child("servers").Index(i)
		if s == nil {
			errs.Add(sp, "must not be null")
			continue
		}
		checkServer(&errs, sp, s)
		if s.Port != nil && s.Port.Name != "" {
			if j, dup := names[s.Port.Name]; dup {
				errs.Add(sp.Child("port", "name"), "port name %q is already used by servers[%d]: names must be unique", s.Port.Name, j)
			} else {
				names[s.Port.Name] = i
			}
		}
	}
	return errs
}

func checkServer(errs *field.List, p *field.Path, s *networking.Server) {
	if len(s.Hosts) == 0 {
		errs.Add(p.Child("hosts"), `required: list hosts, e.g. "*" or "bookinfo.example.com"`)
	}
	for i, h := range s.Hosts {
		checkNamespacedHost(errs, p.Child("hosts").Index(i), h, true)
	}
	unix := strings.HasPrefix(s.Bind, unixPrefix)
	portOK := false
	if s.Port == nil {
		errs.Append(field.Required(p.Child("port")))
	} else {
		pp := p.Child("port")
		before := len(*errs)
		checkProtocol(errs, pp.Child("protocol"), s.Port.Protocol, true)
		if s.Port.Number > 0 || !unix {
			checkPort(errs, pp.Child("number"), s.Port.Number)
		}
		//lint:ignore SA1019 Istio rejects the deprecated field here
		if s.Port.TargetPort != 0 {
			errs.Add(pp.Child("targetPort"), "has no effect on a Gateway: remove it")
		}
		if s.Port.Name == "" {
			errs.Append(field.Required(pp.Child("name")))
		}
		portOK = len(*errs) == before
	}
	if unix {
		checkUnixAddress(errs, p.Child("bind"), strings.TrimPrefix(s.Bind, unixPrefix))
		if s.Port != nil && s.Port.Number != 0 {
			errs.Add(p.Child("port", "number"), "must be 0 for a unix socket bind")
		}
	} else if s.Bind != "" {
		checkIP(errs, p.Child("bind"), s.Bind)
	}
	if s.Tls != nil {
		checkServerTLS(errs, p.Child("tls"), s.Tls)
	}
	if portOK {
		proto := s.Port.Protocol
		switch {
		case isTLSProtocol(proto) && s.Tls == nil:
			errs.Add(p.Child("tls"), "required for protocol %s: set tls.mode (SIMPLE with credentialName, PASSTHROUGH, ...)", proto)
		case !isTLSProtocol(proto) && s.Tls != nil:
			t := s.Tls
			plainRedirect := t.HttpsRedirect && t.CaCertificates == "" && t.PrivateKey == "" && t.ServerCertificate == "" &&
				(t.Mode == networking.ServerTLSSettings_PASSTHROUGH)
			switch {
			case isHTTPProtocol(proto) && !plainRedirect:
				errs.Add(p.Child("tls"), "a plain-text %s server only takes tls.httpsRedirect: use protocol HTTPS to terminate TLS", proto)
			case !isHTTPProtocol(proto):
				errs.Add(p.Child("tls"), "protocol %s takes no TLS settings: use HTTPS or TLS", proto)
			}
		}
	}
}

func checkServerTLS(errs *field.List, p *field.Path, t *networking.ServerTLSSettings) {
	switch t.Mode {
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		for _, f := range []struct {
			set  bool
			name string
		}{
			{t.ServerCertificate != "", "serverCertificate"},
			{t.PrivateKey != "", "privateKey"},
			{t.CaCertificates != "", "caCertificates"},
			{len(t.TlsCertificates) > 0, "tlsCertificates"},
			{t.CredentialName != "", "credentialName"},
			{len(t.CredentialNames) > 0, "credentialNames"},
		} {
			if f.set {
				errs.Add(p.Child(f.name), "ISTIO_MUTUAL uses the mesh certificates: remove %s", f.name)
			}
		}
		return
	case networking.ServerTLSSettings_PASSTHROUGH, networking.ServerTLSSettings_AUTO_PASSTHROUGH:
		// Istio ignores certificates here (with a warning).
		return
	}
	sources := 0
	if t.ServerCertificate != "" && t.PrivateKey != "" {
		sources++
	}
	if t.CredentialName != "" {
		sources++
	}
	if len(t.CredentialNames) > 0 {
		sources++
	}
	if len(t.TlsCertificates) > 0 {
		sources++
	}
	if sources > 1 {
		errs.Add(p, "set only one of credentialName, credentialNames, serverCertificate/privateKey and tlsCertificates")
	}
	mutual := t.Mode == networking.ServerTLSSettings_MUTUAL || t.Mode == networking.ServerTLSSettings_OPTIONAL_MUTUAL
	if t.CaCrl != "" {
		if t.CredentialName != "" {
			errs.Add(p.Child("caCrl"), "not supported with credentialName: put the CRL in the credential")
		}
		if t.Mode == networking.ServerTLSSettings_SIMPLE {
			errs.Add(p.Child("caCrl"), "not supported with SIMPLE TLS")
		}
	}
	if t.CredentialName != "" || len(t.CredentialNames) > 0 {
		// The certificates (and CA for MUTUAL) come from the credential.
		return
	}
	certs := t.TlsCertificates
	if len(certs) == 0 {
		certs = []*networking.ServerTLSSettings_TLSCertificate{{ServerCertificate: t.ServerCertificate, PrivateKey: t.PrivateKey}}
	}
	if mutual && t.CaCertificates == "" {
		errs.Add(p.Child("caCertificates"), "required for %s: set it, or use credentialName", t.Mode)
	}
	for i, c := range certs {
		cp := p
		if len(t.TlsCertificates) > 0 {
			cp = p.Child("tlsCertificates").Index(i)
		}
		if c.ServerCertificate == "" {
			errs.Add(cp.Child("serverCertificate"), "required for %s TLS: set serverCertificate and privateKey, or credentialName", t.Mode)
		}
		if c.PrivateKey == "" {
			errs.Add(cp.Child("privateKey"), "required for %s TLS: set serverCertificate and privateKey, or credentialName", t.Mode)
		}
	}
}

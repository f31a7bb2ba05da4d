package kubeapi

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/trellismesh/trellis/api/split"
	"github.com/trellismesh/trellis/internal/config/field"
	"github.com/trellismesh/trellis/internal/config/validate"
)

// The Gateway API checks reproduce what its CRD schema and CEL rules
// (kubebuilder markers in sigs.k8s.io/gateway-api/apis/v1) make the API
// server reject, since in local mode no API server runs them, plus what
// Trellis needs to route: parents it can attach to (Gateways, or Services
// for GAMMA mesh routing) and Service backends with ports.

// Limits from the Gateway API CRDs.
const (
	gwMaxParentRefs    = 32
	gwMaxHostnames     = 16
	gwMaxRules         = 16
	gwMaxMatches       = 64
	gwMaxRouteMatches  = 128
	gwMaxFilters       = 16
	gwMaxBackendRefs   = 16
	gwMaxHeaderMatches = 16
	gwMaxHeaderActions = 16
	gwMaxWeight        = 1000000
	gwMaxListeners     = 64
	gwMaxAddresses     = 16
	gwMaxCertRefs      = 64
	gwMaxRouteKinds    = 8
	gwMaxCORSItems     = 64
	gwMaxPathLength    = 1024
	gwMaxHeaderName    = 256
	gwMaxHeaderValue   = 4096
	gwMaxQueryValue    = 1024
)

var (
	// RFC 7230 token characters, the CRD's HeaderName pattern.
	gwHeaderNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	gwPathCharsRE  = regexp.MustCompile(`^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`)
	gwDurationRE   = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
	gwGRPCService  = regexp.MustCompile(`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)
	gwGRPCMethod   = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
	gwKindRE       = regexp.MustCompile(`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	gwProtocolRE   = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$`)
	gwCORSOriginRE = regexp.MustCompile(`(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)`)
	gwAddressType  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$`)
)

// HTTPRoute checks one Gateway API HTTPRoute.
func HTTPRoute(m validate.Meta, r *gatewayv1.HTTPRoute) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &r.ObjectMeta)
	sp := field.NewPath("spec")
	gwCommonRouteSpec(&errs, sp, &r.Spec.CommonRouteSpec)
	gwHostnames(&errs, sp.Child("hostnames"), r.Spec.Hostnames)

	rp := sp.Child("rules")
	gwMaxItems(&errs, rp, len(r.Spec.Rules), gwMaxRules)
	ruleNames := kubeDuplicate{}
	total := 0
	for i := range r.Spec.Rules {
		total += len(r.Spec.Rules[i].Matches)
		gwHTTPRule(&errs, rp.Index(i), &r.Spec.Rules[i], ruleNames)
	}
	gwTotalMatches(&errs, rp, total)
	return errs
}

// GRPCRoute checks one Gateway API GRPCRoute.
func GRPCRoute(m validate.Meta, r *gatewayv1.GRPCRoute) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &r.ObjectMeta)
	sp := field.NewPath("spec")
	gwCommonRouteSpec(&errs, sp, &r.Spec.CommonRouteSpec)
	gwHostnames(&errs, sp.Child("hostnames"), r.Spec.Hostnames)

	rp := sp.Child("rules")
	gwMaxItems(&errs, rp, len(r.Spec.Rules), gwMaxRules)
	ruleNames := kubeDuplicate{}
	total := 0
	for i := range r.Spec.Rules {
		total += len(r.Spec.Rules[i].Matches)
		gwGRPCRule(&errs, rp.Index(i), &r.Spec.Rules[i], ruleNames)
	}
	gwTotalMatches(&errs, rp, total)
	return errs
}

func gwMaxItems(errs *field.List, p *field.Path, n, limit int) {
	if n > limit {
		errs.Add(p, "must have at most %d items, not %d", limit, n)
	}
}

func gwTotalMatches(errs *field.List, p *field.Path, total int) {
	if total > gwMaxRouteMatches {
		errs.Add(p, "have %d matches in all, over the %d a route may hold: split the rules across several routes", total, gwMaxRouteMatches)
	}
}

func gwCommonRouteSpec(errs *field.List, sp *field.Path, c *gatewayv1.CommonRouteSpec) {
	switch c.UseDefaultGateways {
	case "", gatewayv1.GatewayDefaultScopeAll, gatewayv1.GatewayDefaultScopeNone:
	default:
		errs.Add(sp.Child("useDefaultGateways"), "%q is not a scope: use All or None", c.UseDefaultGateways)
	}
	gwParentRefs(errs, sp.Child("parentRefs"), c.ParentRefs)
}

// gwCoreGroup reports whether a group names the Kubernetes core group;
// GAMMA examples write it both as "" and as "core".
func gwCoreGroup(g string) bool { return g == "" || g == "core" }

func gwParentRefs(errs *field.List, p *field.Path, refs []gatewayv1.ParentReference) {
	gwMaxItems(errs, p, len(refs), gwMaxParentRefs)
	type parentKey struct{ group, kind, ns, name, section string }
	type portKey struct {
		parentKey
		port int32
	}
	seen := map[portKey]*field.Path{}
	for i, ref := range refs {
		rp := p.Index(i)
		group := gwDeref(ref.Group, gatewayv1.GroupName)
		kind := gwDeref(ref.Kind, "Gateway")
		switch {
		case group == gatewayv1.GroupName && kind == "Gateway":
			gwObjectName(errs, rp.Child("name"), string(ref.Name))
		case gwCoreGroup(string(group)) && kind == "Service":
			kubeServiceName(errs, rp.Child("name"), string(ref.Name))
		case kind == "Service" && ref.Group == nil:
			// The CRD defaults group to gateway.networking.k8s.io, so GAMMA
			// routes that leave it out silently attach to nothing.
			errs.Add(rp.Child("group"), "required for kind Service: set group: \"\" (left out, it defaults to gateway.networking.k8s.io)")
		default:
			errs.Add(rp, "cannot attach to kind %q in group %q: use a Service (group \"\", kind Service) for mesh routing or a Gateway (group gateway.networking.k8s.io, the default)", kind, group)
		}
		ns := gwDeref(ref.Namespace, "")
		if ns != "" {
			kubeMsgs(errs, rp.Child("namespace"), string(ns), "namespace", validation.IsDNS1123Label(string(ns)))
		}
		section := gwDeref(ref.SectionName, "")
		if section != "" {
			gwSectionName(errs, rp.Child("sectionName"), section)
		}
		var port int32
		if ref.Port != nil {
			port = *ref.Port
			kubePort(errs, rp.Child("port"), port)
		}
		// One parent listed twice must say which part of it each entry
		// attaches to, or the two entries are the same attachment.
		k := portKey{parentKey{string(group), string(kind), string(ns), string(ref.Name), string(section)}, port}
		if first, dup := seen[k]; dup {
			errs.Add(rp, "duplicate parentRef: %s already attaches to this parent; give each entry a distinct sectionName or port", first)
		} else {
			seen[k] = rp
		}
	}
}

func gwDeref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func gwObjectName(errs *field.List, p *field.Path, name string) {
	switch {
	case name == "":
		errs.Append(field.Required(p))
	case len(name) > 253:
		errs.Add(p, "must be at most 253 characters")
	}
}

// gwSectionName checks a listener, rule or port name (the CRD's SectionName).
func gwSectionName[T ~string](errs *field.List, p *field.Path, name T) {
	kubeMsgs(errs, p, string(name), "name", validation.IsDNS1123Subdomain(string(name)))
}

func gwHostnames(errs *field.List, p *field.Path, hosts []gatewayv1.Hostname) {
	gwMaxItems(errs, p, len(hosts), gwMaxHostnames)
	for i, h := range hosts {
		gwHostname(errs, p.Index(i), string(h), true)
	}
}

// gwHostname checks a hostname; wildcard allows one leading "*." label.
// IP addresses are refused: the spec matches on Host header names only.
func gwHostname(errs *field.List, p *field.Path, h string, wildcard bool) {
	if h == "" {
		errs.Append(field.Required(p))
		return
	}
	if _, err := netip.ParseAddr(h); err == nil {
		errs.Add(p, "%q is an IP address: use a hostname", h)
		return
	}
	name := h
	if wildcard {
		name = strings.TrimPrefix(h, "*.")
	}
	kubeMsgs(errs, p, h, "hostname", validation.IsDNS1123Subdomain(name))
}

// gwBackendRef checks a backend. Trellis routes to Services only, and a
// Service backend needs a port because a Service may expose several.
func gwBackendRef(errs *field.List, p *field.Path, ref *gatewayv1.BackendObjectReference, weight *int32) {
	group := gwDeref(ref.Group, "")
	kind := gwDeref(ref.Kind, "Service")
	if gwCoreGroup(string(group)) && kind == "Service" {
		kubeServiceName(errs, p.Child("name"), string(ref.Name))
		if ref.Port == nil {
			errs.Add(p.Child("port"), "required for a Service backend: set the Service port to send to")
		}
	} else {
		errs.Add(p, "cannot route to kind %q in group %q: Trellis routes to Services (group \"\", kind Service)", kind, group)
	}
	if ref.Port != nil {
		kubePort(errs, p.Child("port"), *ref.Port)
	}
	if ns := gwDeref(ref.Namespace, ""); ns != "" {
		kubeMsgs(errs, p.Child("namespace"), string(ns), "namespace", validation.IsDNS1123Label(string(ns)))
	}
	if weight != nil {
		switch w := *weight; {
		case w < 0:
			errs.Add(p.Child("weight"), "must be >= 0")
		case w > gwMaxWeight:
			errs.Add(p.Child("weight"), "must be at most %d", gwMaxWeight)
		}
	}
}

func gwHTTPRule(errs *field.List, p *field.Path, rule *gatewayv1.HTTPRouteRule, names kubeDuplicate) {
	if rule.Name != nil {
		gwSectionName(errs, p.Child("name"), *rule.Name)
		names.seen(errs, p.Child("name"), string(*rule.Name), "rule name")
	}
	mp := p.Child("matches")
	gwMaxItems(errs, mp, len(rule.Matches), gwMaxMatches)
	for i := range rule.Matches {
		gwHTTPMatch(errs, mp.Index(i), &rule.Matches[i])
	}

	fp := p.Child("filters")
	gwHTTPFilters(errs, fp, rule.Filters)
	if len(rule.BackendRefs) > 0 {
		for i, f := range rule.Filters {
			if f.Type == gatewayv1.HTTPRouteFilterRequestRedirect {
				errs.Add(fp.Index(i), "RequestRedirect cannot be used with backendRefs: the redirect answers the request itself, so remove the redirect or the backendRefs")
			}
		}
	}
	// ReplacePrefixMatch rewrites the prefix that matched, so there must be
	// exactly one, and it must be a prefix. An absent match or path is
	// defaulted to PathPrefix "/".
	onePrefix := len(rule.Matches) == 0 || (len(rule.Matches) == 1 &&
		(rule.Matches[0].Path == nil || gwDeref(rule.Matches[0].Path.Type, gatewayv1.PathMatchPathPrefix) == gatewayv1.PathMatchPathPrefix))
	if !onePrefix {
		gwReplacePrefixNeedsPrefix(errs, fp, rule.Filters)
	}

	bp := p.Child("backendRefs")
	gwMaxItems(errs, bp, len(rule.BackendRefs), gwMaxBackendRefs)
	for i := range rule.BackendRefs {
		b := &rule.BackendRefs[i]
		gwBackendRef(errs, bp.Index(i), &b.BackendObjectReference, b.Weight)
		gwHTTPFilters(errs, bp.Index(i).Child("filters"), b.Filters)
		if !onePrefix {
			gwReplacePrefixNeedsPrefix(errs, bp.Index(i).Child("filters"), b.Filters)
		}
	}

	if t := rule.Timeouts; t != nil {
		tp := p.Child("timeouts")
		req, reqOK := gwDuration(errs, tp.Child("request"), t.Request)
		be, beOK := gwDuration(errs, tp.Child("backendRequest"), t.BackendRequest)
		if reqOK && beOK && req != 0 && be > req {
			errs.Add(tp.Child("backendRequest"), "must not be longer than the request timeout (%s)", *t.Request)
		}
	}
	if r := rule.Retry; r != nil {
		rp := p.Child("retry")
		for i, c := range r.Codes {
			if c < 400 || c > 599 {
				errs.Add(rp.Child("codes").Index(i), "%d is not a retryable status code: use 400 to 599", c)
			}
		}
		if r.Attempts != nil && *r.Attempts < 1 {
			errs.Add(rp.Child("attempts"), "must be >= 1 (leave retry out to disable retries)")
		}
		gwDuration(errs, rp.Child("backoff"), r.Backoff)
	}
	if s := rule.SessionPersistence; s != nil {
		gwSessionPersistence(errs, p.Child("sessionPersistence"), s)
	}
}

func gwReplacePrefixNeedsPrefix(errs *field.List, p *field.Path, filters []gatewayv1.HTTPRouteFilter) {
	for i, f := range filters {
		var pm *gatewayv1.HTTPPathModifier
		var name string
		switch {
		case f.RequestRedirect != nil && f.RequestRedirect.Path != nil:
			pm, name = f.RequestRedirect.Path, "requestRedirect"
		case f.URLRewrite != nil && f.URLRewrite.Path != nil:
			pm, name = f.URLRewrite.Path, "urlRewrite"
		default:
			continue
		}
		if pm.Type == gatewayv1.PrefixMatchHTTPPathModifier {
			errs.Add(p.Index(i).Child(name, "path"), "ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix: it replaces the prefix that matched")
		}
	}
}

// gwDuration checks a Gateway API duration (e.g. "1h30m", "500ms"); ok is
// false when d is unset or invalid.
func gwDuration(errs *field.List, p *field.Path, d *gatewayv1.Duration) (time.Duration, bool) {
	if d == nil {
		return 0, false
	}
	s := string(*d)
	v, err := time.ParseDuration(s)
	if !gwDurationRE.MatchString(s) || err != nil {
		errs.Add(p, "%q is not a duration: use up to four number+unit parts with units h, m, s or ms, e.g. 1m30s or 500ms", s)
		return 0, false
	}
	return v, true
}

func gwSessionPersistence(errs *field.List, p *field.Path, s *gatewayv1.SessionPersistence) {
	if s.SessionName != nil && len(*s.SessionName) > 128 {
		errs.Add(p.Child("sessionName"), "must be at most 128 characters")
	}
	gwDuration(errs, p.Child("absoluteTimeout"), s.AbsoluteTimeout)
	typ := gwDeref(s.Type, gatewayv1.CookieBasedSessionPersistence)
	switch typ {
	case gatewayv1.CookieBasedSessionPersistence, gatewayv1.HeaderBasedSessionPersistence:
	default:
		errs.Add(p.Child("type"), "%q is not a session persistence type: use Cookie or Header", typ)
	}
	if c := s.CookieConfig; c != nil {
		if typ != gatewayv1.CookieBasedSessionPersistence {
			errs.Add(p.Child("cookieConfig"), "may only be set when type is Cookie")
		}
		switch lt := gwDeref(c.LifetimeType, gatewayv1.SessionCookieLifetimeType); lt {
		case gatewayv1.SessionCookieLifetimeType:
		case gatewayv1.PermanentCookieLifetimeType:
			if s.AbsoluteTimeout == nil {
				errs.Add(p.Child("absoluteTimeout"), "required when cookieConfig.lifetimeType is Permanent: it sets the cookie's lifetime")
			}
		default:
			errs.Add(p.Child("cookieConfig", "lifetimeType"), "%q is not a lifetime type: use Session or Permanent", lt)
		}
	}
}

func gwHTTPMatch(errs *field.List, p *field.Path, m *gatewayv1.HTTPRouteMatch) {
	if m.Path != nil {
		pp := p.Child("path")
		value := gwDeref(m.Path.Value, "/")
		switch typ := gwDeref(m.Path.Type, gatewayv1.PathMatchPathPrefix); typ {
		case gatewayv1.PathMatchExact, gatewayv1.PathMatchPathPrefix:
			gwPathValue(errs, pp.Child("value"), value)
		case gatewayv1.PathMatchRegularExpression:
			gwRegexp(errs, pp.Child("value"), value)
		default:
			errs.Add(pp.Child("type"), "%q is not a path match type: use Exact, PathPrefix or RegularExpression", typ)
		}
		if len(value) > gwMaxPathLength {
			errs.Add(pp.Child("value"), "must be at most %d characters", gwMaxPathLength)
		}
	}

	hp := p.Child("headers")
	gwMaxItems(errs, hp, len(m.Headers), gwMaxHeaderMatches)
	headers := kubeDuplicate{}
	for i, h := range m.Headers {
		gwHeaderMatch(errs, hp.Index(i), string(h.Name), string(gwDeref(h.Type, gatewayv1.HeaderMatchExact)), h.Value, gwMaxHeaderValue, headers)
	}

	qp := p.Child("queryParams")
	gwMaxItems(errs, qp, len(m.QueryParams), gwMaxHeaderMatches)
	params := kubeDuplicate{}
	for i, q := range m.QueryParams {
		ip := qp.Index(i)
		// Query parameter names are case-sensitive, unlike header names.
		gwHeaderName(errs, ip.Child("name"), string(q.Name))
		params.seen(errs, ip.Child("name"), string(q.Name), "query parameter")
		gwMatchValue(errs, ip, string(gwDeref(q.Type, gatewayv1.QueryParamMatchExact)), q.Value, gwMaxQueryValue)
	}

	if m.Method != nil {
		switch *m.Method {
		case gatewayv1.HTTPMethodGet, gatewayv1.HTTPMethodHead, gatewayv1.HTTPMethodPost, gatewayv1.HTTPMethodPut,
			gatewayv1.HTTPMethodDelete, gatewayv1.HTTPMethodConnect, gatewayv1.HTTPMethodOptions,
			gatewayv1.HTTPMethodTrace, gatewayv1.HTTPMethodPatch:
		default:
			errs.Add(p.Child("method"), "%q is not a method: use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH (upper case)", *m.Method)
		}
	}
}

// gwHeaderMatch checks one header match. Header names are case-insensitive,
// and the spec says only the first of equal names counts, so a second one
// is almost certainly a mistake.
func gwHeaderMatch(errs *field.List, p *field.Path, name, typ, value string, maxValue int, seen kubeDuplicate) {
	gwHeaderName(errs, p.Child("name"), name)
	if name != "" {
		seen.seen(errs, p.Child("name"), strings.ToLower(name), "header")
	}
	gwMatchValue(errs, p, typ, value, maxValue)
}

// gwMatchValue checks an Exact or RegularExpression match's value.
func gwMatchValue(errs *field.List, p *field.Path, typ, value string, maxValue int) {
	switch {
	case value == "":
		errs.Append(field.Required(p.Child("value")))
	case len(value) > maxValue:
		errs.Add(p.Child("value"), "must be at most %d characters", maxValue)
	}
	switch typ {
	case "Exact":
	case "RegularExpression":
		if value != "" {
			gwRegexp(errs, p.Child("value"), value)
		}
	default:
		errs.Add(p.Child("type"), "%q is not a match type: use Exact or RegularExpression", typ)
	}
}

func gwHeaderName(errs *field.List, p *field.Path, name string) {
	switch {
	case name == "":
		errs.Append(field.Required(p))
	case len(name) > gwMaxHeaderName:
		errs.Add(p, "must be at most %d characters", gwMaxHeaderName)
	case !gwHeaderNameRE.MatchString(name):
		errs.Add(p, "%q is not a valid header name: use letters, digits and !#$%%&'*+-.^_`|~", name)
	}
}

// gwRegexp checks a regular expression. Trellis matches with Go's regexp
// (RE2 syntax), so that is what must compile; Perl extras such as
// lookahead are refused here rather than at request time.
func gwRegexp(errs *field.List, p *field.Path, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		errs.Add(p, "%q is not a valid regular expression (RE2 syntax): %v", expr, err)
	}
}

// gwPathValue applies the CRD's rules for Exact and PathPrefix paths, which
// keep a route from matching differently than a normalising client expects.
func gwPathValue(errs *field.List, p *field.Path, v string) {
	if !strings.HasPrefix(v, "/") {
		errs.Add(p, "%q must be an absolute path starting with /", v)
		return
	}
	for _, bad := range []string{"//", "/./", "/../", "%2f", "%2F", "#"} {
		if strings.Contains(v, bad) {
			errs.Add(p, "%q must not contain %q", v, bad)
		}
	}
	for _, bad := range []string{"/..", "/."} {
		if strings.HasSuffix(v, bad) {
			errs.Add(p, "%q must not end with %q", v, bad)
		}
	}
	if !gwPathCharsRE.MatchString(v) {
		errs.Add(p, "%q has characters not allowed in a path: percent-encode them (e.g. space as %%20)", v)
	}
}

// gwFilterField is one of a filter union's members and the type it belongs to.
type gwFilterField struct {
	name string
	typ  string
	set  bool
}

// gwFilterUnion checks that exactly the member named by type is set; it
// reports whether the type is known.
func gwFilterUnion(errs *field.List, p *field.Path, typ string, members []gwFilterField) bool {
	known := false
	var names []string
	for _, m := range members {
		names = append(names, m.typ)
		if m.typ == typ {
			known = true
		}
	}
	if !known {
		if typ == "" {
			errs.Add(p.Child("type"), "required: use one of %s", strings.Join(names, ", "))
		} else {
			errs.Add(p.Child("type"), "%q is not a filter type: use one of %s", typ, strings.Join(names, ", "))
		}
		return false
	}
	for _, m := range members {
		switch {
		case m.typ == typ && !m.set:
			errs.Add(p.Child(m.name), "required when type is %s", typ)
		case m.typ != typ && m.set:
			errs.Add(p.Child(m.name), "must not be set when type is %s: set type to %s or remove it", typ, m.typ)
		}
	}
	return true
}

// gwFilterOnce enforces the CRD's "filter cannot be repeated" rules.
func gwFilterOnce(errs *field.List, p *field.Path, typ string, once map[string]bool, seen map[string]*field.Path) {
	if !once[typ] {
		return
	}
	if first, ok := seen[typ]; ok {
		errs.Add(p.Child("type"), "%s filter cannot be repeated (first at %s): merge them into one", typ, first)
		return
	}
	seen[typ] = p
}

var gwHTTPOnce = map[string]bool{
	string(gatewayv1.HTTPRouteFilterCORS):                   true,
	string(gatewayv1.HTTPRouteFilterRequestHeaderModifier):  true,
	string(gatewayv1.HTTPRouteFilterResponseHeaderModifier): true,
	string(gatewayv1.HTTPRouteFilterRequestRedirect):        true,
	string(gatewayv1.HTTPRouteFilterURLRewrite):             true,
}

func gwHTTPFilters(errs *field.List, p *field.Path, filters []gatewayv1.HTTPRouteFilter) {
	gwMaxItems(errs, p, len(filters), gwMaxFilters)
	seen := map[string]*field.Path{}
	for i := range filters {
		f := &filters[i]
		fp := p.Index(i)
		typ := string(f.Type)
		ok := gwFilterUnion(errs, fp, typ, []gwFilterField{
			{"requestHeaderModifier", string(gatewayv1.HTTPRouteFilterRequestHeaderModifier), f.RequestHeaderModifier != nil},
			{"responseHeaderModifier", string(gatewayv1.HTTPRouteFilterResponseHeaderModifier), f.ResponseHeaderModifier != nil},
			{"requestMirror", string(gatewayv1.HTTPRouteFilterRequestMirror), f.RequestMirror != nil},
			{"requestRedirect", string(gatewayv1.HTTPRouteFilterRequestRedirect), f.RequestRedirect != nil},
			{"urlRewrite", string(gatewayv1.HTTPRouteFilterURLRewrite), f.URLRewrite != nil},
			{"cors", string(gatewayv1.HTTPRouteFilterCORS), f.CORS != nil},
			{"externalAuth", string(gatewayv1.HTTPRouteFilterExternalAuth), f.ExternalAuth != nil},
			{"extensionRef", string(gatewayv1.HTTPRouteFilterExtensionRef), f.ExtensionRef != nil},
		})
		if ok {
			gwFilterOnce(errs, fp, typ, gwHTTPOnce, seen)
		}
		if h := f.RequestHeaderModifier; h != nil {
			gwHeaderModifier(errs, fp.Child("requestHeaderModifier"), h)
		}
		if h := f.ResponseHeaderModifier; h != nil {
			gwHeaderModifier(errs, fp.Child("responseHeaderModifier"), h)
		}
		if r := f.RequestMirror; r != nil {
			gwMirror(errs, fp.Child("requestMirror"), r)
		}
		if r := f.RequestRedirect; r != nil {
			gwRedirect(errs, fp.Child("requestRedirect"), r)
		}
		if r := f.URLRewrite; r != nil {
			rp := fp.Child("urlRewrite")
			if r.Hostname != nil {
				gwHostname(errs, rp.Child("hostname"), string(*r.Hostname), false)
			}
			if r.Path != nil {
				gwPathModifier(errs, rp.Child("path"), r.Path)
			}
		}
		if c := f.CORS; c != nil {
			gwCORS(errs, fp.Child("cors"), c)
		}
		if a := f.ExternalAuth; a != nil {
			gwExternalAuth(errs, fp.Child("externalAuth"), a)
		}
		if e := f.ExtensionRef; e != nil {
			gwExtensionRef(errs, fp.Child("extensionRef"), e)
		}
	}
	redirect, rewrite := seen[string(gatewayv1.HTTPRouteFilterRequestRedirect)], seen[string(gatewayv1.HTTPRouteFilterURLRewrite)]
	if redirect != nil && rewrite != nil {
		errs.Add(rewrite, "URLRewrite cannot be combined with RequestRedirect (at %s): the redirect answers the request, so keep one", redirect)
	}
}

// gwHeaderModifier checks set/add/remove. A header may get only one
// action: set-then-remove of the same name has no defined order.
func gwHeaderModifier(errs *field.List, p *field.Path, h *gatewayv1.HTTPHeaderFilter) {
	actions := map[string]*field.Path{}
	claim := func(np *field.Path, name string) {
		key := strings.ToLower(name)
		if first, ok := actions[key]; ok {
			errs.Add(np, "header %q already has an action at %s: give each header one of set, add or remove", name, first)
			return
		}
		actions[key] = np
	}
	for _, list := range []struct {
		name    string
		headers []gatewayv1.HTTPHeader
	}{{"set", h.Set}, {"add", h.Add}} {
		lp := p.Child(list.name)
		gwMaxItems(errs, lp, len(list.headers), gwMaxHeaderActions)
		for i, hd := range list.headers {
			hp := lp.Index(i)
			gwHeaderName(errs, hp.Child("name"), string(hd.Name))
			if hd.Name != "" {
				claim(hp.Child("name"), string(hd.Name))
			}
			switch {
			case hd.Value == "":
				errs.Append(field.Required(hp.Child("value")))
			case len(hd.Value) > gwMaxHeaderValue:
				errs.Add(hp.Child("value"), "must be at most %d characters", gwMaxHeaderValue)
			}
		}
	}
	rp := p.Child("remove")
	gwMaxItems(errs, rp, len(h.Remove), gwMaxHeaderActions)
	for i, name := range h.Remove {
		gwHeaderName(errs, rp.Index(i), name)
		if name != "" {
			claim(rp.Index(i), name)
		}
	}
}

func gwMirror(errs *field.List, p *field.Path, m *gatewayv1.HTTPRequestMirrorFilter) {
	gwBackendRef(errs, p.Child("backendRef"), &m.BackendRef, nil)
	if m.Percent != nil && m.Fraction != nil {
		errs.Add(p, "set percent or fraction, not both")
	}
	if m.Percent != nil && (*m.Percent < 0 || *m.Percent > 100) {
		errs.Add(p.Child("percent"), "must be between 0 and 100")
	}
	if f := m.Fraction; f != nil {
		fp := p.Child("fraction")
		den := gwDeref(f.Denominator, 100)
		if f.Numerator < 0 {
			errs.Add(fp.Child("numerator"), "must be >= 0")
		}
		if den < 1 {
			errs.Add(fp.Child("denominator"), "must be >= 1")
		} else if f.Numerator > den {
			errs.Add(fp.Child("numerator"), "must not be more than the denominator (%d)", den)
		}
	}
}

func gwRedirect(errs *field.List, p *field.Path, r *gatewayv1.HTTPRequestRedirectFilter) {
	if r.Scheme != nil && *r.Scheme != "http" && *r.Scheme != "https" {
		errs.Add(p.Child("scheme"), "%q is not a scheme: use http or https", *r.Scheme)
	}
	if r.Hostname != nil {
		gwHostname(errs, p.Child("hostname"), string(*r.Hostname), false)
	}
	if r.Path != nil {
		gwPathModifier(errs, p.Child("path"), r.Path)
	}
	if r.Port != nil {
		kubePort(errs, p.Child("port"), *r.Port)
	}
	if c := r.StatusCode; c != nil {
		switch *c {
		case 301, 302, 303, 307, 308:
		default:
			errs.Add(p.Child("statusCode"), "%d is not a redirect status: use 301, 302, 303, 307 or 308", *c)
		}
	}
}

func gwPathModifier(errs *field.List, p *field.Path, m *gatewayv1.HTTPPathModifier) {
	full, prefix := m.ReplaceFullPath != nil, m.ReplacePrefixMatch != nil
	switch m.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if !full {
			errs.Add(p.Child("replaceFullPath"), "required when type is ReplaceFullPath")
		}
		if prefix {
			errs.Add(p.Child("replacePrefixMatch"), "must not be set when type is ReplaceFullPath")
		}
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if !prefix {
			errs.Add(p.Child("replacePrefixMatch"), "required when type is ReplacePrefixMatch")
		}
		if full {
			errs.Add(p.Child("replaceFullPath"), "must not be set when type is ReplacePrefixMatch")
		}
	case "":
		errs.Add(p.Child("type"), "required: use ReplaceFullPath or ReplacePrefixMatch")
	default:
		errs.Add(p.Child("type"), "%q is not a path modifier: use ReplaceFullPath or ReplacePrefixMatch", m.Type)
	}
	for _, v := range []struct {
		name string
		s    *string
	}{{"replaceFullPath", m.ReplaceFullPath}, {"replacePrefixMatch", m.ReplacePrefixMatch}} {
		if v.s != nil && len(*v.s) > gwMaxPathLength {
			errs.Add(p.Child(v.name), "must be at most %d characters", gwMaxPathLength)
		}
	}
}

func gwCORS(errs *field.List, p *field.Path, c *gatewayv1.HTTPCORSFilter) {
	op := p.Child("allowOrigins")
	gwMaxItems(errs, op, len(c.AllowOrigins), gwMaxCORSItems)
	gwWildcardAlone(errs, op, len(c.AllowOrigins), func(i int) bool { return c.AllowOrigins[i] == "*" })
	for i, o := range c.AllowOrigins {
		if !gwCORSOriginRE.MatchString(string(o)) || len(o) > 253 {
			errs.Add(op.Index(i), "%q is not an origin: use *, or scheme://host[:port] such as https://example.com or https://*.example.com", o)
		}
	}
	mp := p.Child("allowMethods")
	gwMaxItems(errs, mp, len(c.AllowMethods), 9)
	gwWildcardAlone(errs, mp, len(c.AllowMethods), func(i int) bool { return c.AllowMethods[i] == "*" })
	for i, m := range c.AllowMethods {
		switch m {
		case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*":
		default:
			errs.Add(mp.Index(i), "%q is not a method: use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH or *", m)
		}
	}
	for _, list := range []struct {
		name    string
		headers []gatewayv1.HTTPHeaderName
	}{{"allowHeaders", c.AllowHeaders}, {"exposeHeaders", c.ExposeHeaders}} {
		lp := p.Child(list.name)
		gwMaxItems(errs, lp, len(list.headers), gwMaxCORSItems)
		for i, h := range list.headers {
			gwHeaderName(errs, lp.Index(i), string(h))
		}
	}
	gwWildcardAlone(errs, p.Child("allowHeaders"), len(c.AllowHeaders), func(i int) bool { return c.AllowHeaders[i] == "*" })
	if c.MaxAge < 0 {
		errs.Add(p.Child("maxAge"), "must be >= 1")
	}
}

func gwWildcardAlone(errs *field.List, p *field.Path, n int, isWildcard func(int) bool) {
	if n < 2 {
		return
	}
	for i := 0; i < n; i++ {
		if isWildcard(i) {
			errs.Add(p.Index(i), "* already allows everything: remove it or the other items")
			return
		}
	}
}

func gwExternalAuth(errs *field.List, p *field.Path, a *gatewayv1.HTTPExternalAuthFilter) {
	switch a.ExternalAuthProtocol {
	case gatewayv1.HTTPRouteExternalAuthGRPCProtocol:
		if a.GRPCAuthConfig == nil {
			errs.Add(p.Child("grpc"), "required when protocol is GRPC")
		}
	case gatewayv1.HTTPRouteExternalAuthHTTPProtocol:
		if a.HTTPAuthConfig == nil {
			errs.Add(p.Child("http"), "required when protocol is HTTP")
		}
	case "":
		errs.Add(p.Child("protocol"), "required: use HTTP or GRPC")
	default:
		errs.Add(p.Child("protocol"), "%q is not a protocol: use HTTP or GRPC", a.ExternalAuthProtocol)
	}
	if a.GRPCAuthConfig != nil && a.ExternalAuthProtocol != gatewayv1.HTTPRouteExternalAuthGRPCProtocol {
		errs.Add(p.Child("grpc"), "may only be set when protocol is GRPC")
	}
	if a.HTTPAuthConfig != nil && a.ExternalAuthProtocol != gatewayv1.HTTPRouteExternalAuthHTTPProtocol {
		errs.Add(p.Child("http"), "may only be set when protocol is HTTP")
	}
	gwBackendRef(errs, p.Child("backendRef"), &a.BackendRef, nil)
}

func gwExtensionRef(errs *field.List, p *field.Path, e *gatewayv1.LocalObjectReference) {
	if e.Group != "" {
		kubeMsgs(errs, p.Child("group"), string(e.Group), "group", validation.IsDNS1123Subdomain(string(e.Group)))
	}
	gwKind(errs, p.Child("kind"), string(e.Kind))
	gwObjectName(errs, p.Child("name"), string(e.Name))
}

func gwKind(errs *field.List, p *field.Path, kind string) {
	switch {
	case kind == "":
		errs.Append(field.Required(p))
	case len(kind) > 63 || !gwKindRE.MatchString(kind):
		errs.Add(p, "%q is not a kind: use a name such as Service (letters, digits and -, starting with a letter)", kind)
	}
}

func gwGRPCRule(errs *field.List, p *field.Path, rule *gatewayv1.GRPCRouteRule, names kubeDuplicate) {
	if rule.Name != nil {
		gwSectionName(errs, p.Child("name"), *rule.Name)
		names.seen(errs, p.Child("name"), string(*rule.Name), "rule name")
	}
	mp := p.Child("matches")
	gwMaxItems(errs, mp, len(rule.Matches), gwMaxMatches)
	for i := range rule.Matches {
		m := &rule.Matches[i]
		if m.Method != nil {
			gwGRPCMethodMatch(errs, mp.Index(i).Child("method"), m.Method)
		}
		hp := mp.Index(i).Child("headers")
		gwMaxItems(errs, hp, len(m.Headers), gwMaxHeaderMatches)
		headers := kubeDuplicate{}
		for j, h := range m.Headers {
			gwHeaderMatch(errs, hp.Index(j), string(h.Name), string(gwDeref(h.Type, gatewayv1.GRPCHeaderMatchExact)), h.Value, gwMaxHeaderValue, headers)
		}
	}
	gwGRPCFilters(errs, p.Child("filters"), rule.Filters)
	bp := p.Child("backendRefs")
	gwMaxItems(errs, bp, len(rule.BackendRefs), gwMaxBackendRefs)
	for i := range rule.BackendRefs {
		b := &rule.BackendRefs[i]
		gwBackendRef(errs, bp.Index(i), &b.BackendObjectReference, b.Weight)
		gwGRPCFilters(errs, bp.Index(i).Child("filters"), b.Filters)
	}
	if s := rule.SessionPersistence; s != nil {
		gwSessionPersistence(errs, p.Child("sessionPersistence"), s)
	}
}

func gwGRPCMethodMatch(errs *field.List, p *field.Path, m *gatewayv1.GRPCMethodMatch) {
	if m.Service == nil && m.Method == nil {
		errs.Add(p, "must set service or method (or both)")
	}
	typ := gwDeref(m.Type, gatewayv1.GRPCMethodMatchExact)
	for _, part := range []struct {
		name  string
		value *string
		re    *regexp.Regexp
		hint  string
	}{
		{"service", m.Service, gwGRPCService, "a package-qualified service such as helloworld.Greeter"},
		{"method", m.Method, gwGRPCMethod, "a method name such as SayHello"},
	} {
		if part.value == nil {
			continue
		}
		v, pp := *part.value, p.Child(part.name)
		if len(v) > gwMaxPathLength {
			errs.Add(pp, "must be at most %d characters", gwMaxPathLength)
		}
		switch typ {
		case gatewayv1.GRPCMethodMatchExact:
			if !part.re.MatchString(v) {
				errs.Add(pp, "%q is not valid: use %s", v, part.hint)
			}
		case gatewayv1.GRPCMethodMatchRegularExpression:
			gwRegexp(errs, pp, v)
		}
	}
	if typ != gatewayv1.GRPCMethodMatchExact && typ != gatewayv1.GRPCMethodMatchRegularExpression {
		errs.Add(p.Child("type"), "%q is not a match type: use Exact or RegularExpression", typ)
	}
}

var gwGRPCOnce = map[string]bool{
	string(gatewayv1.GRPCRouteFilterRequestHeaderModifier):  true,
	string(gatewayv1.GRPCRouteFilterResponseHeaderModifier): true,
}

func gwGRPCFilters(errs *field.List, p *field.Path, filters []gatewayv1.GRPCRouteFilter) {
	gwMaxItems(errs, p, len(filters), gwMaxFilters)
	seen := map[string]*field.Path{}
	for i := range filters {
		f := &filters[i]
		fp := p.Index(i)
		typ := string(f.Type)
		ok := gwFilterUnion(errs, fp, typ, []gwFilterField{
			{"requestHeaderModifier", string(gatewayv1.GRPCRouteFilterRequestHeaderModifier), f.RequestHeaderModifier != nil},
			{"responseHeaderModifier", string(gatewayv1.GRPCRouteFilterResponseHeaderModifier), f.ResponseHeaderModifier != nil},
			{"requestMirror", string(gatewayv1.GRPCRouteFilterRequestMirror), f.RequestMirror != nil},
			{"extensionRef", string(gatewayv1.GRPCRouteFilterExtensionRef), f.ExtensionRef != nil},
		})
		if ok {
			gwFilterOnce(errs, fp, typ, gwGRPCOnce, seen)
		}
		if h := f.RequestHeaderModifier; h != nil {
			gwHeaderModifier(errs, fp.Child("requestHeaderModifier"), h)
		}
		if h := f.ResponseHeaderModifier; h != nil {
			gwHeaderModifier(errs, fp.Child("responseHeaderModifier"), h)
		}
		if r := f.RequestMirror; r != nil {
			gwMirror(errs, fp.Child("requestMirror"), r)
		}
		if e := f.ExtensionRef; e != nil {
			gwExtensionRef(errs, fp.Child("extensionRef"), e)
		}
	}
}

// GatewayAPIGateway checks one Gateway API Gateway.
func GatewayAPIGateway(m validate.Meta, g *gatewayv1.Gateway) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &g.ObjectMeta)
	sp := field.NewPath("spec")
	gwObjectName(&errs, sp.Child("gatewayClassName"), string(g.Spec.GatewayClassName))

	lp := sp.Child("listeners")
	switch n := len(g.Spec.Listeners); {
	case n == 0:
		errs.Add(lp, "required: list at least one listener")
	case n > gwMaxListeners:
		gwMaxItems(&errs, lp, n, gwMaxListeners)
	}
	names := kubeDuplicate{}
	endpoints := kubeDuplicate{}
	for i := range g.Spec.Listeners {
		gwListener(&errs, lp.Index(i), &g.Spec.Listeners[i], names, endpoints)
	}

	ap := sp.Child("addresses")
	gwMaxItems(&errs, ap, len(g.Spec.Addresses), gwMaxAddresses)
	addrs := kubeDuplicate{}
	for i, a := range g.Spec.Addresses {
		p := ap.Index(i)
		typ := gwDeref(a.Type, gatewayv1.IPAddressType)
		switch {
		case typ == gatewayv1.IPAddressType:
			if a.Value != "" {
				kubeIP(&errs, p.Child("value"), a.Value, kubeAnyIP)
				addrs.seen(&errs, p.Child("value"), a.Value, "address")
			}
		case typ == gatewayv1.HostnameAddressType:
			if a.Value != "" {
				gwHostname(&errs, p.Child("value"), a.Value, true)
				addrs.seen(&errs, p.Child("value"), a.Value, "address")
			}
		case typ == gatewayv1.NamedAddressType, gwAddressType.MatchString(string(typ)):
		default:
			errs.Add(p.Child("type"), "%q is not an address type: use IPAddress, Hostname, NamedAddress or a domain-prefixed type such as example.com/custom", typ)
		}
	}
	return errs
}

func gwListener(errs *field.List, p *field.Path, l *gatewayv1.Listener, names, endpoints kubeDuplicate) {
	if l.Name == "" {
		errs.Append(field.Required(p.Child("name")))
	} else {
		gwSectionName(errs, p.Child("name"), l.Name)
		names.seen(errs, p.Child("name"), string(l.Name), "listener name")
	}
	kubePort(errs, p.Child("port"), l.Port)
	proto := l.Protocol
	switch {
	case proto == "":
		errs.Add(p.Child("protocol"), "required: use HTTP, HTTPS, TLS, TCP or UDP")
	case len(proto) > 255 || !gwProtocolRE.MatchString(string(proto)):
		errs.Add(p.Child("protocol"), "%q is not a protocol: use HTTP, HTTPS, TLS, TCP or UDP", proto)
	}
	l4 := proto == gatewayv1.TCPProtocolType || proto == gatewayv1.UDPProtocolType
	host := ""
	if l.Hostname != nil && *l.Hostname != "" {
		host = string(*l.Hostname)
		if l4 {
			errs.Add(p.Child("hostname"), "must not be set when protocol is %s: TCP and UDP carry no hostname to match", proto)
		} else {
			gwHostname(errs, p.Child("hostname"), host, true)
		}
	}
	// Two listeners on one port, protocol and hostname could not tell
	// their traffic apart.
	endpoints.seen(errs, p, fmt.Sprintf("%d/%s/%s", l.Port, proto, host), "port/protocol/hostname")

	if t := l.TLS; t != nil {
		tp := p.Child("tls")
		mode := gwDeref(t.Mode, gatewayv1.TLSModeTerminate)
		switch {
		case proto == gatewayv1.HTTPProtocolType || l4:
			errs.Add(tp, "must not be set when protocol is %s: use HTTPS or TLS for TLS listeners", proto)
		case proto == gatewayv1.HTTPSProtocolType && mode != gatewayv1.TLSModeTerminate:
			errs.Add(tp.Child("mode"), "must be Terminate when protocol is HTTPS (use protocol TLS for Passthrough)")
		}
		switch mode {
		case gatewayv1.TLSModeTerminate:
			if len(t.CertificateRefs) == 0 && len(t.Options) == 0 {
				errs.Add(tp.Child("certificateRefs"), "required when mode is Terminate: name the Secret holding the certificate")
			}
		case gatewayv1.TLSModePassthrough:
		default:
			errs.Add(tp.Child("mode"), "%q is not a TLS mode: use Terminate or Passthrough", mode)
		}
		cp := tp.Child("certificateRefs")
		gwMaxItems(errs, cp, len(t.CertificateRefs), gwMaxCertRefs)
		for i, c := range t.CertificateRefs {
			gwObjectName(errs, cp.Index(i).Child("name"), string(c.Name))
			if ns := gwDeref(c.Namespace, ""); ns != "" {
				kubeMsgs(errs, cp.Index(i).Child("namespace"), string(ns), "namespace", validation.IsDNS1123Label(string(ns)))
			}
		}
	} else if proto == gatewayv1.TLSProtocolType {
		errs.Add(p.Child("tls"), "required when protocol is TLS: set mode Passthrough or Terminate")
	}

	if ar := l.AllowedRoutes; ar != nil {
		ap := p.Child("allowedRoutes")
		if ns := ar.Namespaces; ns != nil {
			np := ap.Child("namespaces")
			switch from := gwDeref(ns.From, gatewayv1.NamespacesFromSame); from {
			case gatewayv1.NamespacesFromAll, gatewayv1.NamespacesFromSame:
			case gatewayv1.NamespacesFromSelector:
				if ns.Selector == nil {
					errs.Add(np.Child("selector"), "required when from is Selector")
				}
			default:
				errs.Add(np.Child("from"), "%q is not allowed: use All, Same or Selector", from)
			}
			if ns.Selector != nil {
				kubeLabelSelector(errs, np.Child("selector"), ns.Selector)
			}
		}
		kp := ap.Child("kinds")
		gwMaxItems(errs, kp, len(ar.Kinds), gwMaxRouteKinds)
		for i, k := range ar.Kinds {
			gwKind(errs, kp.Index(i).Child("kind"), string(k.Kind))
		}
	}
}

// TrafficSplit checks one SMI TrafficSplit (canonical form; weights in milli-units).
func TrafficSplit(m validate.Meta, ts *split.TrafficSplit) field.List {
	var errs field.List
	kubeObjectMeta(&errs, &ts.ObjectMeta)
	sp := field.NewPath("spec")
	kubeServiceHost(&errs, sp.Child("service"), ts.Spec.Service)

	bp := sp.Child("backends")
	if len(ts.Spec.Backends) == 0 {
		errs.Add(bp, "required: list the backend Services and their weights")
	}
	seen := kubeDuplicate{}
	var total int64
	negative := false
	for i, b := range ts.Spec.Backends {
		p := bp.Index(i)
		kubeServiceHost(&errs, p.Child("service"), b.Service)
		if b.Service != "" {
			seen.seen(&errs, p.Child("service"), b.Service, "backend")
		}
		if b.WeightMilli < 0 {
			errs.Add(p.Child("weight"), "must be >= 0")
			negative = true
		} else {
			total += b.WeightMilli
		}
	}
	if len(ts.Spec.Backends) > 0 && total == 0 && !negative {
		errs.Add(bp, "all weights are 0, so no backend would get traffic: give at least one backend a weight above 0")
	}
	// Trellis reads no HTTPRouteGroup or TCPRoute objects; ignoring the
	// matches would silently split all traffic instead of the matched part.
	for i, mt := range ts.Spec.Matches {
		errs.Add(sp.Child("matches").Index(i), "not supported: Trellis does not read %s objects, so the split would apply to all traffic; remove matches, or use an HTTPRoute with matches and weighted backendRefs", mt.Kind)
	}
	return errs
}

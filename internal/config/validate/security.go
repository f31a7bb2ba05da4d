package validate

import (
	"encoding/json"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/trellismesh/trellis/internal/config/field"
)

// PeerAuthentication checks one PeerAuthentication. Istio has no extra
// rule for the root namespace: there, without a selector, the policy is
// mesh-wide; with one, it applies to the selected root-namespace workloads.
func PeerAuthentication(m Meta, pa *security.PeerAuthentication) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	checkWorkloadSelector(&errs, spec.Child("selector"), pa.Selector)
	if len(pa.PortLevelMtls) > 0 && len(pa.Selector.GetMatchLabels()) == 0 {
		errs.Add(spec.Child("portLevelMtls"), "needs a selector: ports belong to workloads, so a mesh- or namespace-wide policy cannot set them (add selector.matchLabels)")
	}
	for _, port := range sortedKeys(pa.PortLevelMtls) {
		pp := spec.Child("portLevelMtls").Key(strconv.FormatUint(uint64(port), 10))
		checkPort(&errs, pp, port)
		if pa.PortLevelMtls[port] == nil {
			errs.Add(pp, "must not be null: set mode")
		}
	}
	return errs
}

// AuthorizationPolicy checks one AuthorizationPolicy.
func AuthorizationPolicy(m Meta, ap *security.AuthorizationPolicy) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	checkTargetRefs(&errs, spec, ap.Selector, ap.TargetRef, ap.TargetRefs)

	custom := ap.Action == security.AuthorizationPolicy_CUSTOM
	provider := ap.GetProvider()
	switch {
	case custom && ap.Rules == nil:
		errs.Add(spec.Child("rules"), "a CUSTOM policy without rules never applies: add an empty rule {} to apply it to every request")
	case custom && provider.GetName() == "":
		errs.Append(field.Required(spec.Child("provider", "name")))
	}
	if provider != nil && !custom {
		errs.Add(spec.Child("provider"), "only CUSTOM policies take a provider: set action: CUSTOM, or remove provider")
	}
	if ap.Action == security.AuthorizationPolicy_DENY && ap.Rules == nil {
		errs.Add(spec.Child("rules"), "a DENY policy without rules never applies: add an empty rule {} to deny every request")
	}
	if ap.Action == security.AuthorizationPolicy_AUDIT && ap.Rules == nil {
		errs.Add(spec.Child("rules"), "an AUDIT policy without rules never applies: add an empty rule {} to audit every request")
	}
	for i, r := range ap.Rules {
		rp := spec.Child("rules").Index(i)
		if r == nil {
			errs.Add(rp, "must not be null: use {} to match every request")
			continue
		}
		for j, f := range r.From {
			checkRuleFrom(&errs, rp.Child("from").Index(j), f, custom)
		}
		for j, t := range r.To {
			checkRuleTo(&errs, rp.Child("to").Index(j), t)
		}
		for j, c := range r.When {
			checkCondition(&errs, rp.Child("when").Index(j), c, custom)
		}
	}
	return errs
}

func checkRuleFrom(errs *field.List, p *field.Path, f *security.Rule_From, custom bool) {
	if f == nil {
		errs.Add(p, "must not be null")
		return
	}
	sp := p.Child("source")
	s := f.Source
	if s == nil {
		errs.Append(field.Required(sp))
		return
	}
	lists := []struct {
		name string
		v    []string
	}{
		{"principals", s.Principals}, {"notPrincipals", s.NotPrincipals},
		{"requestPrincipals", s.RequestPrincipals}, {"notRequestPrincipals", s.NotRequestPrincipals},
		{"namespaces", s.Namespaces}, {"notNamespaces", s.NotNamespaces},
		{"serviceAccounts", s.ServiceAccounts}, {"notServiceAccounts", s.NotServiceAccounts},
		{"ipBlocks", s.IpBlocks}, {"notIpBlocks", s.NotIpBlocks},
		{"remoteIpBlocks", s.RemoteIpBlocks}, {"notRemoteIpBlocks", s.NotRemoteIpBlocks},
		{"trustDomains", s.TrustDomains}, {"notTrustDomains", s.NotTrustDomains},
	}
	empty := true
	for _, l := range lists {
		if len(l.v) > 0 {
			empty = false
		}
	}
	if empty {
		errs.Add(sp, "empty source: set principals, namespaces, ipBlocks or another field, or remove from")
	}
	if len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces) > 0 && len(s.ServiceAccounts)+len(s.NotServiceAccounts) > 0 {
		errs.Add(sp.Child("serviceAccounts"), "cannot be combined with principals or namespaces: use one way to name the caller")
	}
	if custom {
		for _, l := range lists {
			switch l.name {
			case "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks":
			default:
				if len(l.v) > 0 {
					errs.Add(sp.Child(l.name), "not supported with action CUSTOM (only ipBlocks and remoteIpBlocks are)")
				}
			}
		}
	}
	for _, l := range lists {
		for i, v := range l.v {
			vp := sp.Child(l.name).Index(i)
			if v == "" {
				errs.Add(vp, "must not be empty")
				continue
			}
			switch l.name {
			case "principals", "notPrincipals":
				if msg := principalProblem(v); msg != "" {
					errs.Add(vp, "%s", msg)
				}
			case "requestPrincipals", "notRequestPrincipals":
				checkRequestPrincipal(errs, vp, v)
			case "namespaces", "notNamespaces":
				checkNamespaceValue(errs, vp, v)
			case "serviceAccounts", "notServiceAccounts":
				checkServiceAccountValue(errs, vp, v)
			case "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks":
				checkIPOrCIDR(errs, vp, v)
			case "trustDomains", "notTrustDomains":
				if msg := wildcardProblem(v); msg != "" {
					errs.Add(vp, "%s", msg)
				} else if strings.Contains(v, "/") {
					errs.Add(vp, "trust domain %q must not contain \"/\"", v)
				}
			}
		}
	}
	if n := len(s.ServiceAccounts); n > 16 {
		errs.Add(sp.Child("serviceAccounts"), "has %d entries: at most 16 are allowed", n)
	}
	if n := len(s.NotServiceAccounts); n > 16 {
		errs.Add(sp.Child("notServiceAccounts"), "has %d entries: at most 16 are allowed", n)
	}
}

// checkNamespaceValue allows Istio's prefix/suffix wildcards in
// authorization namespace values.
func checkNamespaceValue(errs *field.List, p *field.Path, v string) {
	if msg := wildcardProblem(v); msg != "" {
		errs.Add(p, "%s", msg)
		return
	}
	if !strings.Contains(v, "*") && !isDNS1123Label(v) {
		errs.Add(p, "%q is not a valid namespace name", v)
	}
}

// checkRequestPrincipal checks "<issuer>/<subject>" from a JWT, where
// either side may be "*" or use a prefix/suffix wildcard.
func checkRequestPrincipal(errs *field.List, p *field.Path, v string) {
	if msg := wildcardProblem(v); msg != "" {
		errs.Add(p, "%s", msg)
		return
	}
	if !strings.Contains(v, "*") && !strings.Contains(v, "/") {
		errs.Add(p, "request principal %q must be \"<issuer>/<subject>\", e.g. \"https://accounts.example.com/alice\"", v)
	}
}

// checkServiceAccountValue checks "sa" or "namespace/sa" (no wildcards).
func checkServiceAccountValue(errs *field.List, p *field.Path, v string) {
	if strings.Contains(v, "*") {
		errs.Add(p, "wildcards are not allowed in serviceAccounts: use principals for patterns")
		return
	}
	if len(v) > 320 {
		errs.Add(p, "is longer than 320 characters")
		return
	}
	ns, sa, ok := strings.Cut(v, "/")
	if !ok {
		sa, ns = ns, ""
	}
	if strings.Contains(sa, "/") || (ok && (ns == "" || sa == "")) {
		errs.Add(p, "%q must be \"<service-account>\" or \"<namespace>/<service-account>\"", v)
		return
	}
	if ok && !isDNS1123Label(ns) {
		errs.Add(p, "%q: %q is not a valid namespace name", v, ns)
	}
	if !isDNS1123Subdomain(sa) {
		errs.Add(p, "%q: %q is not a valid service account name", v, sa)
	}
}

// pathLiteralRE is RFC 3986's pchar, which Envoy requires in the segments
// of a path template.
var pathLiteralRE = regexp.MustCompile(`^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$`)

func checkRuleTo(errs *field.List, p *field.Path, t *security.Rule_To) {
	if t == nil {
		errs.Add(p, "must not be null")
		return
	}
	op := p.Child("operation")
	o := t.Operation
	if o == nil {
		errs.Append(field.Required(op))
		return
	}
	if len(o.Hosts)+len(o.NotHosts)+len(o.Ports)+len(o.NotPorts)+len(o.Methods)+len(o.NotMethods)+len(o.Paths)+len(o.NotPaths) == 0 {
		errs.Add(op, "empty operation: set hosts, ports, methods or paths, or remove to")
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"hosts", o.Hosts}, {"notHosts", o.NotHosts}} {
		for i, h := range l.v {
			if h == "" {
				errs.Add(op.Child(l.name).Index(i), "must not be empty")
			} else if msg := wildcardProblem(h); msg != "" {
				errs.Add(op.Child(l.name).Index(i), "%s", msg)
			}
		}
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"ports", o.Ports}, {"notPorts", o.NotPorts}} {
		for i, v := range l.v {
			checkPortString(errs, op.Child(l.name).Index(i), v)
		}
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"methods", o.Methods}, {"notMethods", o.NotMethods}} {
		for i, v := range l.v {
			vp := op.Child(l.name).Index(i)
			switch {
			case v == "":
				errs.Add(vp, "must not be empty")
			case v == "*":
			case !headerNameRE.MatchString(v):
				errs.Add(vp, "%q is not an HTTP method", v)
			case strings.ToUpper(v) != v:
				errs.Add(vp, "HTTP methods are case-sensitive: write %q", strings.ToUpper(v))
			}
		}
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"paths", o.Paths}, {"notPaths", o.NotPaths}} {
		for i, v := range l.v {
			checkAuthzPath(errs, op.Child(l.name).Index(i), v)
		}
	}
}

func checkPortString(errs *field.List, p *field.Path, v string) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		errs.Add(p, "%q is not a port number in 1..65535", v)
	}
}

// checkAuthzPath checks an authorization path: exact, "prefix*", "*suffix",
// "*", or an Envoy URI template with {*} and {**} segments.
func checkAuthzPath(errs *field.List, p *field.Path, v string) {
	if v == "" {
		errs.Add(p, "must not be empty")
		return
	}
	if !strings.Contains(v, "{*}") && !strings.Contains(v, "{**}") {
		if strings.ContainsAny(v, "{}") {
			errs.Add(p, "path %q has '{' or '}' outside a {*} or {**} template segment", v)
		} else if msg := wildcardProblem(v); msg != "" {
			errs.Add(p, "%s", msg)
		}
		return
	}
	seenAny := false
	for seg := range strings.SplitSeq(strings.Trim(v, "/"), "/") {
		switch {
		case seenAny && (seg == "{*}" || seg == "{**}"):
			errs.Add(p, "path %q: {**} must be the last template segment", v)
			return
		case seg == "{*}":
		case seg == "{**}":
			seenAny = true
		case strings.ContainsAny(seg, "{}"):
			errs.Add(p, "path %q: segment %q mixes a template with text; a template segment must be exactly {*} or {**}", v, seg)
			return
		case !pathLiteralRE.MatchString(seg):
			errs.Add(p, "path %q: segment %q has characters not allowed in a URI template", v, seg)
			return
		}
	}
}

// mapKeyRE is an attribute with a bracketed key, as request.headers[x-id].
var mapKeyRE = regexp.MustCompile(`^[^\[\]]+\[[^\[\]]+\]$`)

// nestedClaimRE is a claim nested in others, request.auth.claims[a][b],
// which Istio reads as the path a.b.
var nestedClaimRE = regexp.MustCompile(`^[^\[\]]+(\[[^\[\]]+\])+$`)

func checkCondition(errs *field.List, p *field.Path, c *security.Condition, custom bool) {
	if c == nil {
		errs.Add(p, "must not be null")
		return
	}
	kp := p.Child("key")
	key := c.Key
	if key == "" {
		errs.Append(field.Required(kp))
		return
	}
	if len(c.Values) == 0 && len(c.NotValues) == 0 {
		errs.Add(p, "set values or notValues for key %q", key)
	}
	if custom {
		switch {
		case key == "source.namespace", key == "source.serviceAccount", key == "source.trustDomain", key == "source.principal",
			strings.HasPrefix(key, "request.auth."):
			errs.Add(kp, "%q is not supported with action CUSTOM", key)
		}
	}
	var check func(*field.List, *field.Path, string)
	mapKey := false
	switch {
	case strings.HasPrefix(key, "request.headers"):
		mapKey = true
	case key == "source.ip", key == "remote.ip", key == "destination.ip":
		check = checkIPOrCIDR
	case key == "source.namespace":
		check = checkNamespaceValue
	case key == "source.serviceAccount":
		check = checkServiceAccountValue
	case key == "source.principal":
		check = func(errs *field.List, p *field.Path, v string) {
			if msg := principalProblem(v); msg != "" {
				errs.Add(p, "%s", msg)
			}
		}
	case key == "source.trustDomain":
		check = func(errs *field.List, p *field.Path, v string) {
			if msg := wildcardProblem(v); msg != "" {
				errs.Add(p, "%s", msg)
			}
		}
	case key == "request.auth.principal":
		check = checkRequestPrincipal
	case key == "request.auth.audiences", key == "request.auth.presenter", key == "connection.sni":
	case strings.HasPrefix(key, "request.auth.claims"):
		mapKey = true
	case key == "destination.port":
		check = checkPortString
	case strings.HasPrefix(key, "experimental.envoy.filters."):
		mapKey = true
	case key == "destination.namespace":
		errs.Add(kp, "%q is not supported: the policy's namespace already scopes it", key)
		return
	case strings.HasPrefix(key, "destination.labels"):
		errs.Add(kp, "%q is not supported: use spec.selector", key)
		return
	case key == "destination.name", key == "destination.user":
		errs.Add(kp, "%q was removed with Istio's v1alpha1 RBAC: use spec.selector or to.operation", key)
		return
	default:
		errs.Add(kp, "unknown attribute %q: use request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<claim>], destination.ip, destination.port, connection.sni or experimental.envoy.filters.*", key)
		return
	}
	if mapKey && !mapKeyRE.MatchString(key) && !(strings.HasPrefix(key, "request.auth.claims") && nestedClaimRE.MatchString(key)) {
		errs.Add(kp, "%q needs a key in brackets, e.g. request.headers[x-user] or request.auth.claims[iss]", key)
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"values", c.Values}, {"notValues", c.NotValues}} {
		for i, v := range l.v {
			vp := p.Child(l.name).Index(i)
			if v == "" {
				errs.Add(vp, "must not be empty")
				continue
			}
			if check != nil {
				check(errs, vp, v)
			}
		}
	}
}

// strictHeaderRE is the narrower header rule Istio uses for headers it
// writes from JWT claims.
var strictHeaderRE = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

// RequestAuthentication checks one RequestAuthentication.
func RequestAuthentication(m Meta, ra *security.RequestAuthentication) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	checkTargetRefs(&errs, spec, ra.Selector, ra.TargetRef, ra.TargetRefs)
	for i, r := range ra.JwtRules {
		rp := spec.Child("jwtRules").Index(i)
		if r == nil {
			errs.Add(rp, "must not be null")
			continue
		}
		if r.Issuer == "" && r.JwksUri == "" {
			errs.Add(rp.Child("issuer"), "required: set issuer, jwksUri or both")
		}
		for j, a := range r.Audiences {
			if a == "" {
				errs.Add(rp.Child("audiences").Index(j), "must not be empty")
			}
		}
		if r.JwksUri != "" {
			u, err := url.Parse(r.JwksUri)
			switch {
			case err != nil:
				errs.Add(rp.Child("jwksUri"), "invalid URL %q: %v", r.JwksUri, err)
			case u.Scheme != "http" && u.Scheme != "https":
				errs.Add(rp.Child("jwksUri"), "%q must be an http:// or https:// URL", r.JwksUri)
			case u.Hostname() == "":
				errs.Add(rp.Child("jwksUri"), "%q has no host", r.JwksUri)
			case u.Port() != "":
				if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
					errs.Add(rp.Child("jwksUri"), "%q has an invalid port", r.JwksUri)
				}
			}
		}
		if r.Jwks != "" {
			checkJWKS(&errs, rp.Child("jwks"), r.Jwks)
		}
		for j, h := range r.FromHeaders {
			hp := rp.Child("fromHeaders").Index(j)
			if h == nil || h.Name == "" {
				errs.Append(field.Required(hp.Child("name")))
				continue
			}
			checkHeaderName(&errs, hp.Child("name"), h.Name)
		}
		for j, q := range r.FromParams {
			if q == "" {
				errs.Add(rp.Child("fromParams").Index(j), "must not be empty")
			}
		}
		for j, c := range r.FromCookies {
			if c == "" {
				errs.Add(rp.Child("fromCookies").Index(j), "must not be empty")
			}
		}
		if r.OutputPayloadToHeader != "" && !strictHeaderRE.MatchString(r.OutputPayloadToHeader) {
			errs.Add(rp.Child("outputPayloadToHeader"), "%q is not a valid header name (letters, digits, '-' and '_')", r.OutputPayloadToHeader)
		}
		for j, ch := range r.OutputClaimToHeaders {
			cp := rp.Child("outputClaimToHeaders").Index(j)
			if ch == nil {
				errs.Add(cp, "must not be null")
				continue
			}
			if ch.Claim == "" {
				errs.Append(field.Required(cp.Child("claim")))
			}
			if ch.Header == "" {
				errs.Append(field.Required(cp.Child("header")))
			} else if !strictHeaderRE.MatchString(ch.Header) {
				errs.Add(cp.Child("header"), "%q is not a valid header name (letters, digits, '-' and '_')", ch.Header)
			}
		}
		checkDuration(&errs, rp.Child("timeout"), r.Timeout)
	}
	return errs
}

// checkJWKS checks that inline keys are a JSON Web Key or key set. Only
// public keys are needed to verify tokens.
func checkJWKS(errs *field.List, p *field.Path, s string) {
	var v struct {
		Keys []map[string]any `json:"keys"`
		Kty  string           `json:"kty"`
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		errs.Add(p, "is not JSON Web Key Set JSON: %v", err)
		return
	}
	keys := v.Keys
	if v.Keys == nil {
		if v.Kty == "" {
			errs.Add(p, `must be a JSON Web Key Set ({"keys": [...]}) or a single JSON Web Key`)
			return
		}
		keys = []map[string]any{{"kty": v.Kty}}
	}
	if len(keys) == 0 {
		errs.Add(p, "the key set has no keys")
	}
	for i, k := range keys {
		if kty, _ := k["kty"].(string); kty == "" {
			errs.Add(p, "key %d has no \"kty\"", i)
		}
		if _, private := k["d"]; private {
			errs.Add(p, "key %d contains private key material (\"d\"): publish only the public key", i)
		}
	}
}

// Telemetry checks one Telemetry.
func Telemetry(m Meta, t *telemetry.Telemetry) field.List {
	var errs field.List
	spec := field.NewPath("spec")
	checkTargetRefs(&errs, spec, t.Selector, t.TargetRef, t.TargetRefs)
	checkProviders := func(p *field.Path, ps []*telemetry.ProviderRef) {
		for i, pr := range ps {
			if pr.GetName() == "" {
				errs.Append(field.Required(p.Index(i).Child("name")))
			}
		}
	}
	for i, mt := range t.Metrics {
		mp := spec.Child("metrics").Index(i)
		if mt == nil {
			errs.Add(mp, "must not be null")
			continue
		}
		checkProviders(mp.Child("providers"), mt.Providers)
		checkDuration(&errs, mp.Child("reportingInterval"), mt.ReportingInterval)
		for j, o := range mt.Overrides {
			op := mp.Child("overrides").Index(j)
			if o == nil {
				errs.Add(op, "must not be null")
				continue
			}
			for _, name := range sortedKeys(o.TagOverrides) {
				tp := op.Child("tagOverrides").Key(name)
				if name == "" {
					errs.Add(tp, "tag name must not be empty")
				}
				to := o.TagOverrides[name]
				if to == nil {
					errs.Add(tp, "must not be null")
					continue
				}
				switch to.Operation {
				case telemetry.MetricsOverrides_TagOverride_UPSERT:
					if to.Value == "" {
						errs.Add(tp.Child("value"), "required for operation UPSERT")
					}
				case telemetry.MetricsOverrides_TagOverride_REMOVE:
					if to.Value != "" {
						errs.Add(tp.Child("value"), "only UPSERT takes a value: remove it")
					}
				}
			}
			if cm, ok := o.GetMatch().GetMetricMatch().(*telemetry.MetricSelector_CustomMetric); ok && cm.CustomMetric == "" {
				errs.Add(op.Child("match", "customMetric"), "must not be empty")
			}
		}
	}
	for i, tr := range t.Tracing {
		tp := spec.Child("tracing").Index(i)
		if tr == nil {
			errs.Add(tp, "must not be null")
			continue
		}
		checkProviders(tp.Child("providers"), tr.Providers)
		if tr.RandomSamplingPercentage != nil {
			checkPercentValue(&errs, tp.Child("randomSamplingPercentage"), tr.RandomSamplingPercentage.GetValue())
		}
		for _, name := range sortedKeys(tr.CustomTags) {
			cp := tp.Child("customTags").Key(name)
			if name == "" {
				errs.Add(cp, "tag name must not be empty")
			}
			tag := tr.CustomTags[name]
			switch tt := tag.GetType().(type) {
			case *telemetry.Tracing_CustomTag_Literal:
				if tt.Literal.GetValue() == "" {
					errs.Add(cp.Child("literal", "value"), "must not be empty")
				}
			case *telemetry.Tracing_CustomTag_Header:
				if tt.Header.GetName() == "" {
					errs.Add(cp.Child("header", "name"), "must not be empty")
				}
			case *telemetry.Tracing_CustomTag_Environment:
				if tt.Environment.GetName() == "" {
					errs.Add(cp.Child("environment", "name"), "must not be empty")
				}
			case *telemetry.Tracing_CustomTag_Formatter:
				if tt.Formatter.GetValue() == "" {
					errs.Add(cp.Child("formatter", "value"), "must not be empty")
				}
			case nil:
				errs.Add(cp, "set one of literal, environment, header or formatter")
			}
		}
	}
	for i, al := range t.AccessLogging {
		ap := spec.Child("accessLogging").Index(i)
		if al == nil {
			errs.Add(ap, "must not be null")
			continue
		}
		checkProviders(ap.Child("providers"), al.Providers)
		if al.Filter != nil && strings.TrimSpace(al.Filter.Expression) == "" {
			errs.Add(ap.Child("filter", "expression"), "must not be empty: write a CEL expression, or remove filter")
		}
	}
	return errs
}

// Istio's bounds for the mesh connect timeout.
const (
	connectTimeoutMin = time.Millisecond
	connectTimeoutMax = time.Hour
)

// MeshConfig checks a decoded MeshConfig; p is where it sits (data[mesh]).
// It covers what Istio checks of the fields that are set; Trellis fills
// the rest from its defaults, so unset proxy paths are not errors here.
func MeshConfig(p *field.Path, mc *meshv1alpha1.MeshConfig) field.List {
	var errs field.List
	if mc.RootNamespace == "" {
		errs.Add(p.Child("rootNamespace"), "must not be empty (Istio's default is istio-system)")
	} else {
		checkNamespaceName(&errs, p.Child("rootNamespace"), mc.RootNamespace)
	}
	checkTrustDomain(&errs, p.Child("trustDomain"), mc.TrustDomain)
	for i, td := range mc.TrustDomainAliases {
		checkTrustDomain(&errs, p.Child("trustDomainAliases").Index(i), td)
	}
	for _, f := range []struct {
		name string
		v    int32
	}{
		{"proxyListenPort", mc.ProxyListenPort},
		{"proxyInboundListenPort", mc.ProxyInboundListenPort},
		{"proxyHttpPort", mc.ProxyHttpPort},
	} {
		if f.v != 0 {
			checkPort(&errs, p.Child(f.name), uint32(max(f.v, 0)))
		}
	}
	if ct := mc.ConnectTimeout; ct != nil {
		checkDuration(&errs, p.Child("connectTimeout"), ct)
		if d := ct.AsDuration(); d > connectTimeoutMax {
			errs.Add(p.Child("connectTimeout"), "%s is longer than the maximum %s", d, connectTimeoutMax)
		}
	}
	if pd := mc.ProtocolDetectionTimeout; pd != nil && pd.AsDuration() != 0 && pd.AsDuration()%time.Millisecond != 0 {
		errs.Add(p.Child("protocolDetectionTimeout"), "must be a whole number of milliseconds (0s disables it)")
	}
	checkDuration(&errs, p.Child("dnsRefreshRate"), mc.DnsRefreshRate)
	if ka := mc.TcpKeepalive; ka != nil {
		checkDuration(&errs, p.Child("tcpKeepalive", "time"), ka.Time)
		checkDuration(&errs, p.Child("tcpKeepalive", "interval"), ka.Interval)
	}
	checkLocalityLB(&errs, p.Child("localityLbSetting"), mc.LocalityLbSetting)
	for i, s := range mc.ServiceSettings {
		for j, h := range s.GetHosts() {
			checkHost(&errs, p.Child("serviceSettings").Index(i).Child("hosts").Index(j), h, true)
		}
	}
	if dtp := mc.DefaultTrafficPolicy; dtp != nil {
		dp := p.Child("defaultTrafficPolicy")
		checkConnectionPool(&errs, dp.Child("connectionPool"), dtp.ConnectionPool)
		checkOutlierDetection(&errs, dp.Child("outlierDetection"), dtp.OutlierDetection)
	}
	checkHTTPRetry(&errs, p.Child("defaultHttpRetryPolicy"), mc.DefaultHttpRetryPolicy)
	if r := mc.DefaultInboundHttpRetryPolicy; r != nil {
		rp := p.Child("defaultInboundHttpRetryPolicy")
		checkHTTPRetry(&errs, rp, r)
		if r.Attempts == 0 && r.Backoff != nil {
			errs.Add(rp.Child("backoff"), "attempts 0 disables retries: set attempts > 0, or remove backoff")
		}
	}
	if otp := mc.OutboundTrafficPolicy; otp != nil {
		checkClientTLS(&errs, p.Child("outboundTrafficPolicy", "tls"), mc.RootNamespace, otp.Tls)
	}
	for _, f := range []struct {
		name string
		v    []string
	}{
		{"defaultServiceExportTo", mc.DefaultServiceExportTo},
		{"defaultVirtualServiceExportTo", mc.DefaultVirtualServiceExportTo},
		{"defaultDestinationRuleExportTo", mc.DefaultDestinationRuleExportTo},
	} {
		checkExportTo(&errs, p.Child(f.name), mc.RootNamespace, f.v, f.name == "defaultServiceExportTo")
	}
	names := map[string]int{}
	for i, ep := range mc.ExtensionProviders {
		np := p.Child("extensionProviders").Index(i).Child("name")
		switch {
		case ep.GetName() == "":
			errs.Append(field.Required(np))
		default:
			if j, dup := names[ep.Name]; dup {
				errs.Add(np, "provider %q is already defined in extensionProviders[%d]: names must be unique", ep.Name, j)
			} else {
				names[ep.Name] = i
			}
		}
	}
	if mm := mc.MeshMTLS; mm != nil && len(mm.EcdhCurves) > 0 {
		errs.Add(p.Child("meshMTLS", "ecdhCurves"), "not supported for mesh mTLS: set it in tlsDefaults")
	}
	if dc := mc.DefaultConfig; dc != nil {
		checkProxyConfig(&errs, p.Child("defaultConfig"), dc)
	}
	checkMeshTelemetry(&errs, p, mc) // telemetry.go
	return errs
}

func checkTrustDomain(errs *field.List, p *field.Path, td string) {
	if td == "" {
		errs.Add(p, "must not be empty (Istio's default is cluster.local)")
		return
	}
	labels := strings.Split(strings.TrimSuffix(td, "."), ".")
	for _, l := range labels {
		if !isDNS1123Label(l) {
			errs.Add(p, "%q is not a valid trust domain: use a DNS name such as cluster.local", td)
			return
		}
	}
}

// checkProxyConfig checks the parts of defaultConfig that are set.
func checkProxyConfig(errs *field.List, p *field.Path, pc *meshv1alpha1.ProxyConfig) {
	for _, f := range []struct {
		name string
		v    int32
	}{{"proxyAdminPort", pc.ProxyAdminPort}, {"statusPort", pc.StatusPort}} {
		if f.v != 0 {
			checkPort(errs, p.Child(f.name), uint32(max(f.v, 0)))
		}
	}
	if c := pc.Concurrency; c != nil && c.GetValue() < 0 {
		errs.Add(p.Child("concurrency"), "must be >= 0 (0 means one worker per CPU)")
	}
	if d := pc.DrainDuration; d != nil {
		checkDuration(errs, p.Child("drainDuration"), d)
		if d.AsDuration()%time.Second != 0 {
			errs.Add(p.Child("drainDuration"), "must be a whole number of seconds")
		}
	}
	checkDuration(errs, p.Child("terminationDrainDuration"), pc.TerminationDrainDuration)
	for _, f := range []struct {
		name string
		v    string
	}{{"discoveryAddress", pc.DiscoveryAddress}, {"statsdUdpAddress", pc.StatsdUdpAddress}} {
		if f.v != "" {
			checkHostPort(errs, p.Child(f.name), f.v)
		}
	}
}

// checkHostPort checks "host:port", where host is a name or an IP.
func checkHostPort(errs *field.List, p *field.Path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		errs.Add(p, "%q must be <host>:<port>", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		errs.Add(p, "%q: port must be a number in 1..65535", addr)
	}
	if net.ParseIP(host) == nil && !isFQDN(host) {
		errs.Add(p, "%q: %q is neither a host name nor an IP address", addr, host)
	}
}

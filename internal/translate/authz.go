package translate

import (
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	uritemplatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// AuthorizationPolicy is compiled as Istio's pilot compiles it
// (pilot/pkg/security/authz): per workload, the policies that select it
// become Envoy RBAC filters on its inbound chains, DENY before ALLOW,
// AUDIT as Envoy's LOG action; each rule is one RBAC policy named
// ns[NS]-policy[NAME]-rule[i] whose permissions are its `to` entries and
// whose principals its `from` entries, `when` conditions joining the
// side they belong to. HTTP chains get the HTTP filter before the router,
// TCP chains the network filter before tcp_proxy.
//
// What a rule asks that cannot be checked (HTTP fields on a TCP port,
// conditions the proxy cannot see) fails closed, as in Istio: an ALLOW
// rule is dropped (it allows nothing), a DENY or AUDIT rule loses just
// that value (it matches more).

const (
	httpRBACFilterName    = "envoy.filters.http.rbac"
	networkRBACFilterName = "envoy.filters.network.rbac"
	spiffePrefix          = "spiffe://"
)

// authzPolicy is one AuthorizationPolicy that applies to the proxy.
type authzPolicy struct {
	obj  *config.Object
	spec *security.AuthorizationPolicy
}

// authzPolicies are the AuthorizationPolicies that apply to the proxy's
// workload, in name order: those of the root namespace (mesh-wide, or
// the workloads their selector picks in any namespace) and of the
// proxy's namespace (all of it, or by selector). A policy with targetRef
// or targetRefs attaches to a gateway or waypoint, never to a sidecar,
// as in Istio.
func (t *translation) authzPolicies() []authzPolicy {
	var out []authzPolicy
	root := t.w.RootNamespace()
	for _, o := range t.w.Snap.OfKind(config.AuthorizationPolicy) {
		ap, ok := o.Spec.(*security.AuthorizationPolicy)
		if !ok || ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0 {
			continue
		}
		if o.Namespace != root && o.Namespace != t.proxy.Namespace {
			continue
		}
		if !registry.Selects(ap.GetSelector().GetMatchLabels(), t.proxy.Labels) {
			continue
		}
		out = append(out, authzPolicy{obj: o, spec: ap})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].obj, out[j].obj
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

// httpAuthzFilters are the RBAC HTTP filters for the proxy's inbound HTTP
// chains, to go before the router: with CUSTOM policies and a usable
// provider, first the shadow RBAC filter marking the requests their rules
// select and the ext_authz filter asking the provider about those.
func (t *translation) httpAuthzFilters() []*hcmv3.HttpFilter {
	custom := t.customFilters()
	out := custom
	for _, r := range t.rbacRules(false, custom != nil) {
		out = append(out, &hcmv3.HttpFilter{Name: httpRBACFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{
			TypedConfig: mustAny(&httprbacv3.RBAC{Rules: r})}})
	}
	return out
}

// tcpAuthzFilters are the network RBAC filters for the proxy's inbound
// TCP chains, to go before tcp_proxy.
func (t *translation) tcpAuthzFilters(statPrefix string) []*listenerv3.Filter {
	var out []*listenerv3.Filter
	for _, r := range t.rbacRules(true, false) {
		out = append(out, &listenerv3.Filter{Name: networkRBACFilterName, ConfigType: &listenerv3.Filter_TypedConfig{
			TypedConfig: mustAny(&netrbacv3.RBAC{Rules: r, StatPrefix: "tcp." + statPrefix})}})
	}
	return out
}

// rbacRules builds the RBAC configs in the order they apply: AUDIT (logs,
// never refuses), DENY (with CUSTOM, which fails closed), then ALLOW,
// present only when some ALLOW policy applies (with no policy generated,
// it refuses everything: `spec: {}`).
func (t *translation) rbacRules(forTCP, customByProvider bool) []*rbacv3.RBAC {
	policies := t.authzPolicies()
	if len(policies) == 0 {
		return nil
	}
	audit := &rbacv3.RBAC{Action: rbacv3.RBAC_LOG, Policies: map[string]*rbacv3.Policy{}}
	deny := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
	allow := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	hasAllow := false
	for _, p := range policies {
		var into *rbacv3.RBAC
		action := rbacv3.RBAC_DENY
		switch p.spec.GetAction() {
		case security.AuthorizationPolicy_ALLOW:
			into, action, hasAllow = allow, rbacv3.RBAC_ALLOW, true
		case security.AuthorizationPolicy_DENY:
			into = deny
		case security.AuthorizationPolicy_AUDIT:
			into, action = audit, rbacv3.RBAC_LOG
		case security.AuthorizationPolicy_CUSTOM:
			if customByProvider {
				continue // the ext_authz filter asks the provider
			}
			// Without a provider the sidecar can ask (an unknown one, a
			// gRPC one, or on a TCP port) the requests the CUSTOM rules
			// match are refused, as Istio refuses them when the provider
			// is unusable, rather than let through what the authorizer
			// was meant to judge.
			into = deny
		default:
			continue
		}
		for i, rule := range p.spec.GetRules() {
			name := fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", p.obj.Namespace, p.obj.Name, i)
			pol, err := rbacPolicy(rule, p.obj.Namespace, t.trustDomains(), forTCP, action)
			if err != nil {
				// Only ALLOW returns errors: the rule is dropped, so it
				// allows nothing.
				t.w.reportOnce(t.log, fmt.Sprintf("authz/%s/%s/%d/%v", p.obj.Namespace, p.obj.Name, i, forTCP),
					"AuthorizationPolicy rule dropped: it allows nothing here", "policy", p.obj.Namespace+"/"+p.obj.Name,
					"rule", i, "tcp", forTCP, "reason", err.Error())
				continue
			}
			into.Policies[name] = pol
		}
	}
	var out []*rbacv3.RBAC
	if len(audit.Policies) > 0 {
		out = append(out, audit)
	}
	if len(deny.Policies) > 0 {
		out = append(out, deny)
	}
	if hasAllow {
		out = append(out, allow)
	}
	return out
}

// extAuthzPolicyPrefix names the shadow policies of CUSTOM rules, and
// extAuthzStatPrefix the dynamic metadata the ext_authz filter is enabled
// by, as Istio names them.
const (
	extAuthzPolicyPrefix = "istio-ext-authz"
	extAuthzStatPrefix   = "istio_ext_authz_"
)

// customFilters builds, for the CUSTOM policies that apply to the proxy,
// Istio's pair of HTTP filters: a shadow RBAC filter whose policies are
// the CUSTOM rules (it decides nothing; the policy it matches marks the
// request) and an ext_authz filter enabled by that mark, asking the
// MeshConfig extensionProvider (envoyExtAuthzHttp) the policies name.
// nil when there are none or the provider cannot be used: then the
// CUSTOM rules deny (rbacRules).
func (t *translation) customFilters() []*hcmv3.HttpFilter {
	var custom []authzPolicy
	for _, p := range t.authzPolicies() {
		if p.spec.GetAction() == security.AuthorizationPolicy_CUSTOM {
			custom = append(custom, p)
		}
	}
	if len(custom) == 0 {
		return nil
	}
	report := func(msg string, args ...any) {
		t.w.reportOnce(t.log, "authz-custom/"+t.proxy.ID+"/"+msg, msg, append(args, "proxy", t.proxy.ID)...)
	}
	name := custom[0].spec.GetProvider().GetName()
	for _, p := range custom[1:] {
		if p.spec.GetProvider().GetName() != name {
			report("AuthorizationPolicy CUSTOM policies on one workload name different providers (Istio allows one): the requests their rules match are refused")
			return nil
		}
	}
	var http *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider
	var grpc *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider
	found := false
	for _, ep := range t.w.Mesh.GetExtensionProviders() {
		if ep.GetName() != name {
			continue
		}
		found = true
		http, grpc = ep.GetEnvoyExtAuthzHttp(), ep.GetEnvoyExtAuthzGrpc()
		if http == nil && grpc == nil {
			report("AuthorizationPolicy CUSTOM provider is not an envoyExtAuthzHttp or envoyExtAuthzGrpc provider: the requests its rules match are refused", "provider", name)
			return nil
		}
	}
	if !found {
		report("AuthorizationPolicy CUSTOM provider not found in MeshConfig extensionProviders: the requests its rules match are refused", "provider", name)
		return nil
	}
	service, port, timeoutD, failOpen, statusOnError, body := http.GetService(), http.GetPort(), http.GetTimeout(), http.GetFailOpen(), http.GetStatusOnError(), http.GetIncludeRequestBodyInCheck()
	if grpc != nil {
		service, port, timeoutD, failOpen, statusOnError, body = grpc.GetService(), grpc.GetPort(), grpc.GetTimeout(), grpc.GetFailOpen(), grpc.GetStatusOnError(), grpc.GetIncludeRequestBodyInCheck()
	}
	if body != nil && body.GetMaxRequestBytes() == 0 {
		// Envoy refuses a with_request_body of 0 bytes.
		report("extension provider includeRequestBodyInCheck.maxRequestBytes must be greater than 0: the requests the CUSTOM rules match are refused", "provider", name)
		return nil
	}
	ns, host, ok := strings.Cut(service, "/")
	if !ok {
		ns, host = t.proxy.Namespace, service
	}
	svc := t.w.Reg.Lookup(host, ns)
	if svc == nil {
		report("extension provider service not found in the registry: the requests the CUSTOM rules match are refused", "provider", name, "service", service)
		return nil
	}
	shadow := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
	for _, p := range custom {
		for i, rule := range p.spec.GetRules() {
			// Compiled as DENY: a value that cannot be checked is left
			// out, so more requests go to the authorizer, not fewer.
			pol, _ := rbacPolicy(rule, p.obj.Namespace, t.trustDomains(), false, rbacv3.RBAC_DENY)
			shadow.Policies[fmt.Sprintf("%s-ns[%s]-policy[%s]-rule[%d]", extAuthzPolicyPrefix, p.obj.Namespace, p.obj.Name, i)] = pol
		}
	}
	status := uint32(403)
	if statusOnError != "" {
		if n, err := strconv.ParseUint(statusOnError, 10, 32); err == nil {
			status = uint32(n)
		}
	}
	timeout := durationpb.New(600 * time.Second)
	if timeoutD != nil {
		timeout = timeoutD
	}
	cluster := ClusterName("outbound", port, "", svc.Hostname)
	ext := &extauthzv3.ExtAuthz{
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    failOpen,
		StatusOnError:       &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		FilterEnabledMetadata: &matcherv3.MetadataMatcher{
			Filter: httpRBACFilterName,
			Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: extAuthzStatPrefix + "shadow_effective_policy_id"}}},
			Value:  &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: extAuthzPolicyPrefix}}}},
		},
	}
	if body != nil {
		ext.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: body.GetMaxRequestBytes(), AllowPartialMessage: body.GetAllowPartialMessage(), PackAsBytes: body.GetPackAsBytes()}
	}
	if grpc != nil {
		ext.Services = &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster, Authority: svc.Hostname}},
			Timeout:         timeout,
		}}
	} else {
		ext.Services = &extauthzv3.ExtAuthz_HttpService{HttpService: httpAuthzService(http, svc.Hostname, cluster, timeout)}
	}
	return []*hcmv3.HttpFilter{
		{Name: httpRBACFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&httprbacv3.RBAC{ShadowRules: shadow, ShadowRulesStatPrefix: extAuthzStatPrefix})}},
		{Name: "envoy.filters.http.ext_authz", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(ext)}},
	}
}

// httpAuthzService is the ext_authz http_service for an envoyExtAuthzHttp
// provider, as Istio writes it.
func httpAuthzService(http *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider, host, cluster string, timeout *durationpb.Duration) *extauthzv3.HttpService {
	headerList := func(names []string) *matcherv3.ListStringMatcher {
		if len(names) == 0 {
			return nil
		}
		l := &matcherv3.ListStringMatcher{}
		for _, n := range names {
			m := authzString(strings.ToLower(n), "")
			m.IgnoreCase = true
			l.Patterns = append(l.Patterns, m)
		}
		return l
	}
	//lint:ignore SA1019 Istio's includeHeadersInCheck is the deprecated spelling of includeRequestHeadersInCheck; both hold
	req := &extauthzv3.AuthorizationRequest{AllowedHeaders: headerList(slices.Concat(http.GetIncludeRequestHeadersInCheck(), http.GetIncludeHeadersInCheck()))}
	add := http.GetIncludeAdditionalHeadersInCheck()
	keys := make([]string, 0, len(add))
	for k := range add {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		req.HeadersToAdd = append(req.HeadersToAdd, &corev3.HeaderValue{Key: k, Value: add[k]})
	}
	return &extauthzv3.HttpService{
		ServerUri: &corev3.HttpUri{
			Uri:              fmt.Sprintf("http://%s:%d", host, http.GetPort()),
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster},
			Timeout:          timeout,
		},
		PathPrefix:           http.GetPathPrefix(),
		AuthorizationRequest: req,
		AuthorizationResponse: &extauthzv3.AuthorizationResponse{
			AllowedUpstreamHeaders: headerList(http.GetHeadersToUpstreamOnAllow()),
			AllowedClientHeaders:   headerList(http.GetHeadersToDownstreamOnDeny()),
		},
	}
}

// reportOnce logs a translation note once per World (every proxy's
// translation meets the same policy).
func (w *World) reportOnce(log *slog.Logger, key, msg string, args ...any) {
	if _, seen := w.reported.LoadOrStore(key, true); !seen {
		log.Warn(msg, args...)
	}
}

// trustDomains is the mesh's trust domain bundle: its own trust domain
// (MeshConfig trustDomain) first, then its trustDomainAliases.
func (t *translation) trustDomains() []string {
	return append([]string{t.w.domain}, t.w.Mesh.GetTrustDomainAliases()...)
}

// withTrustDomains applies Istio's trust domain bundle to a rule's
// principals and trust domains: a principal naming one of the bundle's
// trust domains, or cluster.local (which stands for the local one), is
// expanded to every trust domain of the bundle; a trust domain of the
// bundle to all of them. Principals whose trust domain is "*" or another
// one stay as written.
func withTrustDomains(k authzKey, tds []string) authzKey {
	switch k.key {
	case "source.principal":
		k.values, k.notValues = expandPrincipals(k.values, tds), expandPrincipals(k.notValues, tds)
	case "source.trustDomain":
		expand := func(vals []string) []string {
			var out []string
			for _, v := range vals {
				if slices.Contains(tds, v) {
					out = append(out, tds...)
				} else {
					out = append(out, v)
				}
			}
			return out
		}
		k.values, k.notValues = expand(k.values), expand(k.notValues)
	}
	return k
}

func expandPrincipals(principals, tds []string) []string {
	var out []string
	for _, p := range principals {
		parts := strings.Split(p, "/")
		if len(parts) != 5 || parts[0] == "*" || (parts[0] != "cluster.local" && !slices.Contains(tds, parts[0])) {
			out = append(out, p)
			continue
		}
		for _, td := range tds {
			np := td + "/" + strings.Join(parts[1:], "/")
			if !slices.Contains(out, np) {
				out = append(out, np)
			}
		}
	}
	return out
}

// authzKey is one attribute of a rule with its values and notValues.
type authzKey struct {
	key       string
	values    []string
	notValues []string
}

// rbacPolicy compiles one rule, following Istio's model: the principals
// are one entry per `from` (or one, when there is none), each the AND of
// its source fields and the source-side `when` conditions; the
// permissions likewise per `to`. For ALLOW, an error drops the rule; for
// DENY and AUDIT the value that cannot be compiled is left out.
func rbacPolicy(r *security.Rule, ns string, tds []string, forTCP bool, action rbacv3.RBAC_Action) (*rbacv3.Policy, error) {
	var basePerm, basePrin []authzKey
	for _, c := range r.GetWhen() {
		k := authzKey{key: c.GetKey(), values: c.GetValues(), notValues: c.GetNotValues()}
		k = withTrustDomains(k, tds)
		if isPermissionKey(k.key) {
			basePerm = append(basePerm, k)
		} else {
			basePrin = append(basePrin, k)
		}
	}
	pol := &rbacv3.Policy{}
	froms := r.GetFrom()
	if len(froms) == 0 {
		froms = []*security.Rule_From{nil}
	}
	for _, f := range froms {
		var keys []authzKey
		if s := f.GetSource(); s != nil {
			keys = appendKey(keys, "source.principal", s.GetPrincipals(), s.GetNotPrincipals())
			if len(keys) > 0 {
				keys[len(keys)-1] = withTrustDomains(keys[len(keys)-1], tds)
			}
			keys = appendKey(keys, "request.auth.principal", s.GetRequestPrincipals(), s.GetNotRequestPrincipals())
			keys = appendKey(keys, "source.namespace", s.GetNamespaces(), s.GetNotNamespaces())
			keys = appendKey(keys, "source.serviceAccount", s.GetServiceAccounts(), s.GetNotServiceAccounts())
			keys = appendKey(keys, "source.trustDomain", s.GetTrustDomains(), s.GetNotTrustDomains())
			if n := len(keys); n > 0 && keys[n-1].key == "source.trustDomain" {
				keys[n-1] = withTrustDomains(keys[n-1], tds)
			}
			keys = appendKey(keys, "remote.ip", s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks())
			keys = appendKey(keys, "source.ip", s.GetIpBlocks(), s.GetNotIpBlocks())
		}
		keys = append(keys, basePrin...)
		var and []*rbacv3.Principal
		for _, k := range keys {
			ids, err := principalsFor(k, ns, forTCP, action)
			if err != nil {
				return nil, err
			}
			and = append(and, ids...)
		}
		if len(and) == 0 {
			and = append(and, &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}})
		}
		pol.Principals = append(pol.Principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: and}}})
	}
	tos := r.GetTo()
	if len(tos) == 0 {
		tos = []*security.Rule_To{nil}
	}
	for _, to := range tos {
		var keys []authzKey
		if o := to.GetOperation(); o != nil {
			keys = appendKey(keys, "request.host", o.GetHosts(), o.GetNotHosts())
			keys = appendKey(keys, "request.method", o.GetMethods(), o.GetNotMethods())
			keys = appendKey(keys, "request.path", o.GetPaths(), o.GetNotPaths())
			keys = appendKey(keys, "destination.port", o.GetPorts(), o.GetNotPorts())
		}
		keys = append(keys, basePerm...)
		var and []*rbacv3.Permission
		for _, k := range keys {
			rules, err := permissionsFor(k, forTCP, action)
			if err != nil {
				return nil, err
			}
			and = append(and, rules...)
		}
		if len(and) == 0 {
			and = append(and, &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}})
		}
		pol.Permissions = append(pol.Permissions, &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}})
	}
	return pol, nil
}

func appendKey(keys []authzKey, key string, values, notValues []string) []authzKey {
	if len(values) == 0 && len(notValues) == 0 {
		return keys
	}
	return append(keys, authzKey{key: key, values: values, notValues: notValues})
}

// isPermissionKey says which `when` keys describe the destination (Envoy
// permissions) rather than the caller or request (principals), as Istio
// sorts them.
func isPermissionKey(k string) bool {
	return k == "destination.ip" || k == "destination.port" || k == "connection.sni" || strings.HasPrefix(k, "experimental.envoy.filters.")
}

// checkAuthzErr applies Istio's rule: an ALLOW rule with a value that
// cannot be compiled is dropped (allows less); DENY and AUDIT leave out
// the value (match more).
func checkAuthzErr(action rbacv3.RBAC_Action, err error) error {
	if action == rbacv3.RBAC_ALLOW {
		return err
	}
	return nil
}

func principalsFor(k authzKey, ns string, forTCP bool, action rbacv3.RBAC_Action) ([]*rbacv3.Principal, error) {
	var out []*rbacv3.Principal
	for i, vals := range [][]string{k.values, k.notValues} {
		var or []*rbacv3.Principal
		for _, v := range vals {
			p, err := principalFor(k.key, v, ns, forTCP)
			if err != nil {
				if err := checkAuthzErr(action, err); err != nil {
					return nil, err
				}
				continue
			}
			or = append(or, p)
		}
		if len(or) == 0 {
			continue
		}
		p := &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: or}}}
		if i == 1 {
			p = &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: p}}
		}
		out = append(out, p)
	}
	return out, nil
}

func permissionsFor(k authzKey, forTCP bool, action rbacv3.RBAC_Action) ([]*rbacv3.Permission, error) {
	var out []*rbacv3.Permission
	for i, vals := range [][]string{k.values, k.notValues} {
		var or []*rbacv3.Permission
		for _, v := range vals {
			p, err := permissionFor(k.key, v, forTCP)
			if err != nil {
				if err := checkAuthzErr(action, err); err != nil {
					return nil, err
				}
				continue
			}
			or = append(or, p)
		}
		if len(or) == 0 {
			continue
		}
		p := &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: or}}}
		if i == 1 {
			p = &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: p}}
		}
		out = append(out, p)
	}
	return out, nil
}

func httpOnly(key string) error { return fmt.Errorf("%q is HTTP only", key) }

func principalFor(key, v, ns string, forTCP bool) (*rbacv3.Principal, error) {
	authenticated := func(m *matcherv3.StringMatcher) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
	}
	switch {
	case key == "source.principal":
		return authenticated(authzPrincipal(v)), nil
	case key == "source.namespace":
		return authenticated(authzRegex(".*/ns/" + strings.ReplaceAll(regexp.QuoteMeta(v), `\*`, ".*") + "/.*")), nil
	case key == "source.serviceAccount":
		sns, sa, ok := strings.Cut(v, "/")
		if !ok {
			sns, sa = ns, v
		}
		return authenticated(authzRegex(fmt.Sprintf("spiffe://.+/ns/%s/(.+/|)sa/%s(/.+)?", regexp.QuoteMeta(sns), regexp.QuoteMeta(sa)))), nil
	case key == "source.ip", key == "remote.ip":
		c, err := cidrRange(v)
		if err != nil {
			return nil, err
		}
		if key == "remote.ip" {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: c}}, nil
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: c}}, nil
	case strings.HasPrefix(key, "request.headers"):
		if forTCP {
			return nil, httpOnly(key)
		}
		name, err := bracketed(key, "request.headers")
		if err != nil {
			return nil, err
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: authzHeaderList(name, v)}}, nil
	case key == "request.auth.principal", key == "request.auth.audiences", key == "request.auth.presenter",
		strings.HasPrefix(key, "request.auth.claims"):
		// Request authentication writes these as dynamic metadata; the
		// proxy has none until it validates JWTs, so they never match.
		if forTCP {
			return nil, httpOnly(key)
		}
		path := []string{key}
		if strings.HasPrefix(key, "request.auth.claims") {
			claims, err := nestedBrackets(strings.TrimPrefix(key, "request.auth.claims"))
			if err != nil {
				return nil, fmt.Errorf("%q: %w", key, err)
			}
			path = append([]string{"request.auth.claims"}, claims...)
		}
		var segs []*matcherv3.MetadataMatcher_PathSegment
		for _, p := range path {
			segs = append(segs, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: p}})
		}
		//lint:ignore SA1019 Istio writes request authentication matchers as metadata, which the sidecar decodes
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
			Filter: "istio_authn", Path: segs,
			Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: authzString(v, "")}},
		}}}, nil
	case key == "source.trustDomain":
		// The trust domain is the SPIFFE ID's authority.
		if v == "*" {
			return authenticated(authzRegex(".+")), nil
		}
		return authenticated(authzRegex(spiffePrefix + strings.ReplaceAll(regexp.QuoteMeta(v), `\*`, "[^/]*") + "/.*")), nil
	}
	return nil, fmt.Errorf("unknown attribute %q", key)
}

func permissionFor(key, v string, forTCP bool) (*rbacv3.Permission, error) {
	switch key {
	case "request.host":
		if forTCP {
			return nil, httpOnly("hosts")
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: authzHost(v)}}, nil
	case "request.method":
		if forTCP {
			return nil, httpOnly("methods")
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: authzHeader(":method", v)}}, nil
	case "request.path":
		if forTCP {
			return nil, httpOnly("paths")
		}
		if strings.Contains(v, "{*}") || strings.Contains(v, "{**}") {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{
				Name: "uri-template", TypedConfig: mustAny(&uritemplatev3.UriTemplateMatchConfig{PathTemplate: v})}}}, nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
			Rule: &matcherv3.PathMatcher_Path{Path: authzString(v, "")}}}}, nil
	case "destination.port":
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%q is not a port", v)
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}, nil
	case "destination.ip":
		c, err := cidrRange(v)
		if err != nil {
			return nil, err
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: c}}, nil
	case "connection.sni":
		// The server name the downstream's TLS handshake asked for, as
		// Istio compiles it; "" on plaintext.
		return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: authzString(v, "")}}, nil
	}
	return nil, fmt.Errorf("%q is not supported by Trellis", key)
}

// authzString is Istio's: "*" any non-empty value, "*x" a suffix, "x*" a
// prefix, else exact; prefix is prepended to the value's literal part.
func authzString(v, prefix string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return authzRegex(".+")
	case strings.HasPrefix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: prefix + v[1:]}}
	case strings.HasSuffix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix + v[:len(v)-1]}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: prefix + v}}
}

// authzPrincipal compares with the SPIFFE ID: spiffe:// + the principal.
// A suffix becomes a regex, since the scheme is a prefix.
func authzPrincipal(v string) *matcherv3.StringMatcher {
	if v != "*" && strings.HasPrefix(v, "*") {
		return authzRegex(spiffePrefix + ".*" + regexp.QuoteMeta(v[1:]))
	}
	return authzString(v, spiffePrefix)
}

func authzRegex(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// authzHost matches :authority ignoring case; "*" is any host.
func authzHost(v string) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: ":authority", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	m := authzString(v, "")
	m.IgnoreCase = true
	return &routev3.HeaderMatcher{Name: ":authority", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}
}

func authzHeader(name, v string) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: authzString(v, "")}}
}

// authzHeaderList matches a request header one of whose comma-separated
// values is v (Envoy joins repeated headers with ","), as Istio does.
func authzHeaderList(name, v string) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	var e string
	switch {
	case strings.HasPrefix(v, "*"):
		e = ".*" + regexp.QuoteMeta(v[1:])
	case strings.HasSuffix(v, "*"):
		e = regexp.QuoteMeta(v[:len(v)-1]) + ".*"
	default:
		e = regexp.QuoteMeta(v)
	}
	re := fmt.Sprintf("^%s$|^%s,.*|.*,%s,.*|.*,%s$", e, e, e, e)
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: authzRegex(re)}}
}

func bracketed(key, prefix string) (string, error) {
	rest := strings.TrimPrefix(key, prefix)
	if len(rest) < 3 || rest[0] != '[' || rest[len(rest)-1] != ']' {
		return "", fmt.Errorf("%q needs a name in brackets", key)
	}
	return rest[1 : len(rest)-1], nil
}

// nestedBrackets splits "[a][b]" into a and b: a claim nested in others,
// as Istio reads request.auth.claims[a][b].
func nestedBrackets(s string) ([]string, error) {
	var out []string
	for s != "" {
		if s[0] != '[' {
			return nil, fmt.Errorf("expected [ at %q", s)
		}
		end := strings.IndexByte(s, ']')
		if end < 2 {
			return nil, fmt.Errorf("empty or unclosed bracket in %q", s)
		}
		out = append(out, s[1:end])
		s = s[end+1:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("needs a claim name in brackets")
	}
	return out, nil
}

func cidrRange(v string) (*corev3.CidrRange, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", v)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
}

// inboundPassthroughCluster is the sidecar's own cluster to the app at
// the connection's original destination (Istio's name).
const inboundPassthroughCluster = "InboundPassthroughCluster"

// authzPassthroughChains is the catch-all inbound chain (no destination
// port) carrying the workload's policies compiled for TCP, when any apply:
// it judges connections to ports no service claims and non-HTTP bytes on
// an HTTP port, as Istio's passthrough and sniffed TCP chains carry the
// network RBAC filter. Without policies there is none, and such
// connections pass to the app as before.
func (t *translation) authzPassthroughChains() []*listenerv3.FilterChain {
	filters := t.tcpAuthzFilters(inboundPassthroughCluster)
	if len(filters) == 0 {
		return nil
	}
	return []*listenerv3.FilterChain{{
		Name:    inboundPassthroughCluster,
		Filters: append(filters, tcpProxyFilter(inboundPassthroughCluster, inboundPassthroughCluster)),
	}}
}

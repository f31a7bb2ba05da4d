package translate

import (
	"net/url"
	"sort"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// RequestAuthentication is compiled as Istio's pilot compiles it
// (pilot/pkg/security/authn, convertToEnvoyJwtConfig): the jwtRules of
// every RequestAuthentication that applies to the proxy's workload, sorted
// by issuer, become the providers origins-0, origins-1, ... of one
// envoy.filters.http.jwt_authn filter on its inbound HTTP chains, ahead of
// authorization and the router. A request without a token passes (its
// principal is empty, for AuthorizationPolicy to judge); a request with an
// invalid token is refused with 401.
//
// jwksUri becomes remote_jwks, which the sidecar fetches and caches itself
// (Istio's PILOT_JWT_ENABLE_REMOTE_JWKS=envoy): cached five minutes, as
// istiod sets it, refreshed in the background.

const (
	jwtFilterName = "envoy.filters.http.jwt_authn"
	// jwtPayloadMetadata is where istiod has the filter put the verified
	// payload (filters.EnvoyJwtFilterPayload).
	jwtPayloadMetadata = "payload"
	jwksCacheDuration  = 5 * 60 // seconds, istiod's
	jwksTimeout        = 5      // seconds, istiod's default for jwtRules[].timeout
)

// jwtRules are the jwtRules of the RequestAuthentications that apply to
// the proxy's workload: those of the root namespace (mesh-wide, or the
// workloads their selector picks) and of the proxy's namespace (all of
// it, or by selector), all together, as Istio merges them. One with
// targetRef(s) attaches to a gateway or waypoint, never to a sidecar.
func (t *translation) jwtRules() []*security.JWTRule {
	var out []*security.JWTRule
	root := t.w.RootNamespace()
	for _, o := range t.w.Snap.OfKind(config.RequestAuthentication) {
		ra, ok := o.Spec.(*security.RequestAuthentication)
		if !ok || ra.GetTargetRef() != nil || len(ra.GetTargetRefs()) > 0 {
			continue
		}
		if o.Namespace != root && o.Namespace != t.proxy.Namespace {
			continue
		}
		if !registry.Selects(ra.GetSelector().GetMatchLabels(), t.proxy.Labels) {
			continue
		}
		out = append(out, ra.GetJwtRules()...)
	}
	// By issuer, as istiod sorts them, so the config is deterministic.
	sort.SliceStable(out, func(i, j int) bool { return out[i].GetIssuer() < out[j].GetIssuer() })
	return out
}

// jwtFilters is the jwt_authn filter for the proxy's inbound HTTP chains
// (none when no RequestAuthentication applies), to go first.
func (t *translation) jwtFilters() []*hcmv3.HttpFilter {
	cfg := t.jwtAuthentication(t.jwtRules())
	if cfg == nil {
		return nil
	}
	return []*hcmv3.HttpFilter{{Name: jwtFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}}
}

// jwtAuthentication builds istiod's filter config for rules: a provider
// per rule, and one requirement for every path. With one provider it is
// {provider OR allow_missing}; with several, {P1 OR P2 ... OR AND{P1 OR
// allow_missing, P2 OR allow_missing, ...}}: a token, where present, must
// be valid, and the single-provider branches pass a request whose token
// sits in a location several providers share (it fails every other
// provider there). A rule with presence: REQUIRED needs its provider's
// token: its branch is the provider alone, and the request must satisfy
// every rule's branch.
func (t *translation) jwtAuthentication(rules []*security.JWTRule) *jwtv3.JwtAuthentication {
	if len(rules) == 0 {
		return nil
	}
	providers := map[string]*jwtv3.JwtProvider{}
	var inner, outer []*jwtv3.JwtRequirement
	required := false
	for i, r := range rules {
		name := "origins-" + strconv.Itoa(i)
		providers[name] = t.jwtProvider(r)
		byName := &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}}
		outer = append(outer, byName)
		if r.GetPresence() == security.JWTRule_REQUIRED {
			required = true
			inner = append(inner, byName)
			continue
		}
		inner = append(inner, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{
			Requirements: []*jwtv3.JwtRequirement{byName, {RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}}},
		}}})
	}
	var req *jwtv3.JwtRequirement
	switch {
	case len(inner) == 1:
		req = inner[0]
	case required:
		req = &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: inner}}}
	default:
		outer = append(outer, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: inner}}})
		req = &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: outer}}}
	}
	return &jwtv3.JwtAuthentication{
		Providers: providers,
		Rules: []*jwtv3.RequirementRule{{
			Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtv3.RequirementRule_Requires{Requires: req},
		}},
		BypassCorsPreflight: true,
	}
}

// jwtProvider is one jwtRule as istiod writes it.
func (t *translation) jwtProvider(r *security.JWTRule) *jwtv3.JwtProvider {
	p := &jwtv3.JwtProvider{
		Issuer:                     r.GetIssuer(),
		Audiences:                  r.GetAudiences(),
		Forward:                    r.GetForwardOriginalToken(),
		ForwardPayloadHeader:       r.GetOutputPayloadToHeader(),
		PayloadInMetadata:          jwtPayloadMetadata,
		NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{SpaceDelimitedClaims: spaceDelimitedClaims(r.GetSpaceDelimitedClaims())},
		FromParams:                 r.GetFromParams(),
		FromCookies:                r.GetFromCookies(),
	}
	for _, h := range r.GetFromHeaders() {
		p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
	}
	for _, c := range r.GetOutputClaimToHeaders() {
		p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
	}
	timeout := durationpb.New(jwksTimeout * 1e9)
	if r.GetTimeout() != nil {
		timeout = durationpb.New(r.GetTimeout().AsDuration())
	}
	switch {
	case r.GetJwks() != "":
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: r.GetJwks()}}}
	case r.GetJwksUri() != "":
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
			HttpUri: &corev3.HttpUri{
				Uri:              r.GetJwksUri(),
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: jwksCluster(r.GetJwksUri())},
				Timeout:          timeout,
			},
			CacheDuration: &durationpb.Duration{Seconds: jwksCacheDuration},
		}}
	default:
		// Istio resolves an issuer's jwksUri by OpenID discovery, which
		// Trellis does not do: an empty key set fails every token of
		// the issuer, as istiod's fake JWKS does when it cannot fetch.
		t.w.reportOnce(t.log, "jwt-discovery/"+r.GetIssuer(),
			"RequestAuthentication jwtRule for issuer "+strconv.Quote(r.GetIssuer())+" has neither jwks nor jwksUri; OpenID discovery is not supported, so its tokens are refused: set jwksUri")
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: `{"keys":[]}`}}}
	}
	return p
}

// spaceDelimitedClaims are a rule's, with Istio's defaults scope and
// permission always among them, sorted.
func spaceDelimitedClaims(extra []string) []string {
	set := map[string]bool{"permission": true, "scope": true}
	for _, c := range extra {
		set[c] = true
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// jwksCluster names the outbound cluster of a jwksUri's host and port,
// as istiod does; the sidecar fetches the URI itself and the name is for
// the reader of a config dump.
func jwksCluster(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
	}
	return ClusterName("outbound", uint32(port), "", u.Hostname())
}

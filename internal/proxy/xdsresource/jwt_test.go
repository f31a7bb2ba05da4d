package xdsresource_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// jwtListener is a listener whose one HTTP chain has filters, then the
// router.
func jwtListener(t *testing.T, filters ...*hcmv3.HttpFilter) []byte {
	t.Helper()
	h := &hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}},
		HttpFilters:    append(filters, router(t)),
	}
	return marshal(t, &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, h)}}}})
}

func jwtFilter(t *testing.T, j *jwtv3.JwtAuthentication) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.jwt_authn", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, j)}}
}

func inline(s string) *jwtv3.JwtProvider_LocalJwks {
	return &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}}
}

func byName(n string) *jwtv3.JwtRequirement {
	return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: n}}
}

// TestJWTFields: every field of istiod's jwt_authn filter the proxy
// honours arrives in the decoded config.
func TestJWTFields(t *testing.T) {
	b := jwtListener(t, jwtFilter(t, &jwtv3.JwtAuthentication{
		Providers: map[string]*jwtv3.JwtProvider{
			"origins-0": {
				Issuer: "https://a", Audiences: []string{"x"}, Forward: true,
				FromHeaders:          []*jwtv3.JwtHeader{{Name: "X-Token", ValuePrefix: "T "}},
				FromParams:           []string{"tok"},
				FromCookies:          []string{"session"},
				ForwardPayloadHeader: "X-Payload", PadForwardPayloadHeader: true, PayloadInMetadata: "payload",
				ClaimToHeaders:             []*jwtv3.JwtClaimToHeader{{HeaderName: "X-Sub", ClaimName: "sub"}},
				NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{SpaceDelimitedClaims: []string{"scope"}},
				ClockSkewSeconds:           30,
				JwksSourceSpecifier: &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
					HttpUri:       &corev3.HttpUri{Uri: "http://keys/jwks", HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "outbound|80||keys"}, Timeout: durationpb.New(2 * time.Second)},
					CacheDuration: durationpb.New(time.Minute),
					AsyncFetch:    &jwtv3.JwksAsyncFetch{FailedRefetchDuration: durationpb.New(3 * time.Second)},
				}},
			},
			"origins-1": {Issuer: "https://b", JwksSourceSpecifier: inline(`{"keys":[]}`)},
		},
		Rules: []*jwtv3.RequirementRule{{Match: prefix("/"), RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
			RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: []*jwtv3.JwtRequirement{
				byName("origins-0"),
				{RequiresType: &jwtv3.JwtRequirement_ProviderAndAudiences{ProviderAndAudiences: &jwtv3.ProviderWithAudiences{ProviderName: "origins-1", Audiences: []string{"y"}}}},
				{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
			}}}}}}},
		BypassCorsPreflight: true,
	}))
	l, err := xdsresource.DecodeListener(b)
	if err != nil {
		t.Fatal(err)
	}
	inlineKeys := `{"keys":[]}`
	want := &xdsresource.JWTAuthentication{
		Providers: map[string]*xdsresource.JWTProvider{
			"origins-0": {
				Issuer: "https://a", Audiences: []string{"x"}, Forward: true,
				FromHeaders: []xdsresource.JWTHeader{{Name: "x-token", ValuePrefix: "T "}}, FromParams: []string{"tok"}, FromCookies: []string{"session"},
				ForwardPayloadHeader: "x-payload", PadForwardPayloadHeader: true, PayloadInMetadata: "payload",
				SpaceDelimitedClaims: []string{"scope"}, ClaimToHeaders: []xdsresource.JWTClaimHeader{{Header: "x-sub", Claim: "sub"}},
				ClockSkew:  30 * time.Second,
				RemoteJWKS: &xdsresource.RemoteJWKS{URI: "http://keys/jwks", Cluster: "outbound|80||keys", Timeout: 2 * time.Second, CacheDuration: time.Minute, FailedRefetch: 3 * time.Second},
			},
			"origins-1": {Issuer: "https://b", LocalJWKS: &inlineKeys},
		},
		Rules: []xdsresource.JWTRule{{PathKind: xdsresource.PathPrefix, Path: "/", Requires: &xdsresource.JWTRequirement{Kind: xdsresource.RequireAny, Of: []xdsresource.JWTRequirement{
			{Kind: xdsresource.RequireProvider, Provider: "origins-0"},
			{Kind: xdsresource.RequireProvider, Provider: "origins-1", Audiences: []string{"y"}},
			{Kind: xdsresource.AllowMissing},
		}}}},
		BypassCORSPreflight: true,
	}
	if diff := cmp.Diff(want, l.FilterChains[0].HTTP.JWT); diff != "" {
		t.Errorf("decoded jwt_authn (-want +got):\n%s", diff)
	}
}

// TestJWTRefused: what the proxy cannot honour NACKs the listener, with
// the path of the field.
func TestJWTRefused(t *testing.T) {
	ok := func() *jwtv3.JwtProvider {
		return &jwtv3.JwtProvider{Issuer: "i", JwksSourceSpecifier: inline(`{"keys":[]}`)}
	}
	rule := func(r *jwtv3.JwtRequirement) []*jwtv3.RequirementRule {
		return []*jwtv3.RequirementRule{{Match: prefix("/"), RequirementType: &jwtv3.RequirementRule_Requires{Requires: r}}}
	}
	with := func(f func(p *jwtv3.JwtProvider)) *jwtv3.JwtAuthentication {
		p := ok()
		f(p)
		return &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{"p": p}, Rules: rule(byName("p"))}
	}
	for _, tc := range []struct {
		name string
		j    *jwtv3.JwtAuthentication
		want string
	}{
		{"unknown provider", &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{"p": ok()}, Rules: rule(byName("q"))},
			`http_filters[0].typed_config.rules[0].requires: provider "q" is not configured`},
		{"requirement_map", &jwtv3.JwtAuthentication{RequirementMap: map[string]*jwtv3.JwtRequirement{"r": byName("p")}}, `typed_config.requirement_map: not supported`},
		{"rule by requirement name", &jwtv3.JwtAuthentication{Rules: []*jwtv3.RequirementRule{{Match: prefix("/"), RequirementType: &jwtv3.RequirementRule_RequirementName{RequirementName: "r"}}}},
			`rules[0].requirement_name: not supported`},
		{"regex rule", &jwtv3.JwtAuthentication{Rules: []*jwtv3.RequirementRule{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: safeRegex("/a.*")}}, RequirementType: &jwtv3.RequirementRule_Requires{Requires: byName("p")}}}, Providers: map[string]*jwtv3.JwtProvider{"p": ok()}},
			`rules[0].match: only a case-sensitive prefix or path`},
		{"no keys", with(func(p *jwtv3.JwtProvider) { p.JwksSourceSpecifier = nil }), `providers["p"]: needs local_jwks or remote_jwks`},
		{"jwks from a file", with(func(p *jwtv3.JwtProvider) {
			p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/jwks"}}}
		}), `providers["p"].local_jwks.filename: not supported`},
		{"subjects", with(func(p *jwtv3.JwtProvider) { p.Subjects = &matcherv3.StringMatcher{} }), `providers["p"].subjects: not supported`},
		{"require_expiration", with(func(p *jwtv3.JwtProvider) { p.RequireExpiration = true }), `providers["p"].require_expiration: not supported`},
		{"max_lifetime", with(func(p *jwtv3.JwtProvider) { p.MaxLifetime = durationpb.New(time.Hour) }), `providers["p"].max_lifetime: not supported`},
		{"claim_path", with(func(p *jwtv3.JwtProvider) {
			p.ClaimToHeaders = []*jwtv3.JwtClaimToHeader{{HeaderName: "x", ClaimPath: []*jwtv3.JwtClaimToHeader_PathSegment{{}}}}
		}), `claim_to_headers[0].claim_path: not supported`},
		{"bad header name", with(func(p *jwtv3.JwtProvider) { p.FromHeaders = []*jwtv3.JwtHeader{{Name: "bad name"}} }), `from_headers[0].name: "bad name" is not a valid header name`},
		{"remote without uri", with(func(p *jwtv3.JwtProvider) {
			p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{}}
		}), `remote_jwks.http_uri.uri: required`},
		{"or list of one", &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{"p": ok()}, Rules: rule(&jwtv3.JwtRequirement{
			RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: []*jwtv3.JwtRequirement{byName("p")}}}})},
			`requires.requires_any.requirements: needs at least 2 requirements`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := xdsresource.DecodeListener(jwtListener(t, jwtFilter(t, tc.j)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			var xe *xdsresource.Error
			if !errors.As(err, &xe) {
				t.Fatalf("error %T is not an *xdsresource.Error", err)
			}
		})
	}

	// A jwt_authn filter after the router would never run in Envoy.
	h := &hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}},
		HttpFilters:    []*hcmv3.HttpFilter{router(t), jwtFilter(t, with(func(*jwtv3.JwtProvider) {}))},
	}
	b := marshal(t, &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, h)}}}})
	if _, err := xdsresource.DecodeListener(b); err == nil || !strings.Contains(err.Error(), "follows the router") {
		t.Errorf("jwt_authn after the router: %v, want it refused", err)
	}
}

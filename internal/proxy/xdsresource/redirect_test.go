package xdsresource_test

import (
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// A redirect's path may also be the request's, rewritten by prefix_rewrite
// or regex_rewrite (Envoy's path_rewrite_specifier: the last one set wins).
func TestRedirectRewrites(t *testing.T) {
	rc := rcWith(
		&routev3.Route{Name: "prefix", Match: prefix("/old"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new"}}}},
		&routev3.Route{Name: "regex", Match: prefix("/old"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_RegexRewrite{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{
				Pattern: safeRegex(`^/old(/.*)?$`), Substitution: `/v2\1`}}}}},
	)
	got, err := xdsresource.DecodeRouteConfig(marshal(t, rc))
	if err != nil {
		t.Fatal(err)
	}
	rs := got.VirtualHosts[0].Routes
	if rd := rs[0].Redirect; rd == nil || rd.PrefixRewrite != "/new" || rd.RegexRewrite != nil || rd.Path != "" {
		t.Errorf("prefix_rewrite redirect decoded as %+v", rd)
	}
	rd := rs[1].Redirect
	if rd == nil || rd.RegexRewrite == nil || rd.PrefixRewrite != "" {
		t.Fatalf("regex_rewrite redirect decoded as %+v", rd)
	}
	if got := rd.RegexRewrite.ReplaceAllString("/old/a", rd.RegexSubstitution); got != "/v2/a" {
		t.Errorf("regex_rewrite turns /old/a into %q, want /v2/a", got)
	}

	// A regex that does not compile is refused, naming the field.
	bad := rcWith(&routev3.Route{Match: prefix("/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
		PathRewriteSpecifier: &routev3.RedirectAction_RegexRewrite{RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: safeRegex("(")}}}}})
	if _, err := xdsresource.DecodeRouteConfig(marshal(t, bad)); err == nil || !strings.Contains(err.Error(), "redirect.regex_rewrite.pattern: invalid regex") {
		t.Errorf("bad redirect regex: %v", err)
	}
}

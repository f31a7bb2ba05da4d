package router

import (
	"regexp"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// The Location of a redirect is Envoy's: scheme, host, port and path
// replaced as the RedirectAction says, default ports left out, the query
// kept.
func TestRedirectLocation(t *testing.T) {
	prefix := xdsresource.RouteMatch{PathKind: xdsresource.PathSeparatedPrefix, Path: "/old"}
	for _, c := range []struct {
		name              string
		match             xdsresource.RouteMatch
		rd                xdsresource.Redirect
		scheme, host, url string
		want              string
	}{
		{"nothing changed", prefix, xdsresource.Redirect{}, "http", "reviews:9080", "/old/a", "http://reviews:9080/old/a"},
		{"path", prefix, xdsresource.Redirect{Path: "/new"}, "http", "reviews:9080", "/old/a?q=1", "http://reviews:9080/new?q=1"},
		{"path with its own query", prefix, xdsresource.Redirect{Path: "/new?x=2"}, "http", "reviews", "/old?q=1", "http://reviews/new?x=2"},
		{"host", prefix, xdsresource.Redirect{Host: "other"}, "http", "reviews:9080", "/old", "http://other/old"},
		{"host and port", prefix, xdsresource.Redirect{Host: "other", Port: 8080}, "http", "reviews:9080", "/old", "http://other:8080/old"},
		{"port", prefix, xdsresource.Redirect{Port: 8080}, "http", "reviews:9080", "/old", "http://reviews:8080/old"},
		{"default port left out", prefix, xdsresource.Redirect{Port: 80}, "http", "reviews:9080", "/old", "http://reviews/old"},
		{"https and its default port", prefix, xdsresource.Redirect{Scheme: "https", Port: 443}, "http", "reviews:9080", "/old", "https://reviews/old"},
		{"https keeps a request's other port", prefix, xdsresource.Redirect{Scheme: "https"}, "http", "reviews:9080", "/old", "https://reviews:9080/old"},
		{"https drops http's default port", prefix, xdsresource.Redirect{Scheme: "https"}, "http", "reviews:80", "/old", "https://reviews/old"},
		{"http on 443", prefix, xdsresource.Redirect{Scheme: "http", Port: 443}, "http", "reviews", "/old", "http://reviews:443/old"},
		{"ipv6 host", prefix, xdsresource.Redirect{Port: 8080}, "http", "[fd00::1]:9080", "/old", "http://[fd00::1]:8080/old"},
		{"prefix rewrite", prefix, xdsresource.Redirect{PrefixRewrite: "/new"}, "http", "reviews", "/old/a?q=1", "http://reviews/new/a?q=1"},
		{"prefix rewrite with slash", prefix, xdsresource.Redirect{PrefixRewrite: "/new/"}, "http", "reviews", "/old/a", "http://reviews/new/a"},
		{"exact rewrite", xdsresource.RouteMatch{PathKind: xdsresource.PathExact, Path: "/old"}, xdsresource.Redirect{PrefixRewrite: "/new"}, "http", "reviews", "/old", "http://reviews/new"},
		{"regex rewrite", prefix, xdsresource.Redirect{RegexRewrite: regexp.MustCompile(`^/old(/.*)?$`), RegexSubstitution: "/v2${1}"}, "http", "reviews", "/old/a?q=1", "http://reviews/v2/a?q=1"},
	} {
		rt := &xdsresource.Route{Match: c.match, Redirect: &c.rd}
		path, query := c.url, ""
		for i := range path {
			if path[i] == '?' {
				path, query = c.url[:i], c.url[i+1:]
				break
			}
		}
		if got := RedirectLocation(rt, c.scheme, c.host, path, query); got != c.want {
			t.Errorf("%s: Location %q, want %q", c.name, got, c.want)
		}
	}
}

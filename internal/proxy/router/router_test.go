package router

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

func re(s string) *regexp.Regexp { return regexp.MustCompile("^(?:" + s + ")$") }

func vh(name string, domains ...string) xdsresource.VirtualHost {
	return xdsresource.VirtualHost{Name: name, Domains: domains, Routes: []xdsresource.Route{{
		Name:   name,
		Match:  xdsresource.RouteMatch{PathKind: xdsresource.PathPrefix, Path: "/"},
		Action: &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: name, Weight: 1}}, TotalWeight: 1},
	}}}
}

func mustCompile(t testing.TB, rc *xdsresource.RouteConfig) *Table {
	t.Helper()
	tb, err := Compile(rc)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// names gives "vhost/route" for a match, "-" for nil parts.
func names(v *xdsresource.VirtualHost, r *xdsresource.Route) string {
	a, b := "-", "-"
	if v != nil {
		a = v.Name
	}
	if r != nil {
		b = r.Name
	}
	return a + "/" + b
}

func TestVirtualHostPrecedence(t *testing.T) {
	tb := mustCompile(t, &xdsresource.RouteConfig{Name: "rc", VirtualHosts: []xdsresource.VirtualHost{
		vh("exact", "foo.com", "API.foo.com", "reviews:9080"),
		vh("suffix", "*.foo.com"),
		vh("dash-suffix", "*-bar.foo.com"),
		vh("prefix", "foo.*"),
		vh("long-prefix", "foo.bar.*"),
		vh("any", "*"),
	}})
	for _, tc := range []struct{ authority, want string }{
		{"foo.com", "exact"},
		{"FOO.Com", "exact"},
		{"api.foo.com", "exact"}, // exact beats the suffix wildcard; config case folded too
		{"reviews:9080", "exact"},
		{"reviews", "any"}, // the port is not stripped or added: Envoy matches as given
		{"foo.com:80", "prefix"},
		{"a.foo.com", "suffix"},
		{"baz-bar.foo.com", "dash-suffix"}, // longest suffix first
		{"-bar.foo.com", "suffix"},         // "*-bar" needs a non-empty wildcard part
		{".foo.com", "any"},                // nor does "*." match an empty part
		{"foo.foo.com", "suffix"},          // suffix wildcards beat prefix wildcards
		{"foo.org", "prefix"},
		{"foo.bar.org", "long-prefix"}, // longest prefix first
		{"foo.", "any"},
		{"", "any"},
		{"elsewhere", "any"},
	} {
		v, r := tb.Match(&Request{Authority: tc.authority, Path: "/"})
		if got := names(v, r); got != tc.want+"/"+tc.want {
			t.Errorf("authority %q: got %s, want %s", tc.authority, got, tc.want)
		}
	}

	// Without "*", an unknown authority finds nothing.
	tb = mustCompile(t, &xdsresource.RouteConfig{VirtualHosts: []xdsresource.VirtualHost{vh("a", "a")}})
	if v, r := tb.Match(&Request{Authority: "b", Path: "/"}); v != nil || r != nil {
		t.Errorf("got %s, want no match", names(v, r))
	}
	// Only "*": every request, any authority.
	tb = mustCompile(t, &xdsresource.RouteConfig{VirtualHosts: []xdsresource.VirtualHost{vh("any", "*")}})
	if v, r := tb.Match(&Request{Authority: strings.Repeat("x", 1000), Path: "/"}); names(v, r) != "any/any" {
		t.Errorf("got %s", names(v, r))
	}
	// A nil config routes nothing.
	if v, r := mustCompile(t, nil).Match(&Request{Authority: "a", Path: "/"}); v != nil || r != nil {
		t.Errorf("nil config matched %s", names(v, r))
	}
}

func TestLongAuthority(t *testing.T) {
	long := strings.Repeat("a", 600) + ".Example.com"
	tb := mustCompile(t, &xdsresource.RouteConfig{VirtualHosts: []xdsresource.VirtualHost{vh("exact", strings.ToLower(long)), vh("suffix", "*.example.com")}})
	if v, _ := tb.Match(&Request{Authority: long, Path: "/"}); v == nil || v.Name != "exact" {
		t.Errorf("long authority: got %v", v)
	}
	if v, _ := tb.Match(&Request{Authority: "B" + long, Path: "/"}); v == nil || v.Name != "suffix" {
		t.Errorf("long authority: got %v", v)
	}
}

func TestCompileErrors(t *testing.T) {
	for name, rc := range map[string]*xdsresource.RouteConfig{
		"duplicate exact":    {VirtualHosts: []xdsresource.VirtualHost{vh("a", "x.com"), vh("b", "X.COM")}},
		"duplicate suffix":   {VirtualHosts: []xdsresource.VirtualHost{vh("a", "*.x.com"), vh("b", "*.x.com")}},
		"duplicate prefix":   {VirtualHosts: []xdsresource.VirtualHost{vh("a", "x.*", "x.*")}},
		"two catch-alls":     {VirtualHosts: []xdsresource.VirtualHost{vh("a", "*"), vh("b", "*")}},
		"path regex missing": {VirtualHosts: []xdsresource.VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []xdsresource.Route{{Match: xdsresource.RouteMatch{PathKind: xdsresource.PathRegex}}}}}},
		"header regex missing": {VirtualHosts: []xdsresource.VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []xdsresource.Route{{Match: xdsresource.RouteMatch{
			Headers: []xdsresource.HeaderMatcher{{Name: "x", Match: xdsresource.StringMatcher{Kind: xdsresource.StringRegex}}}}}}}}},
		"query kind unknown": {VirtualHosts: []xdsresource.VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []xdsresource.Route{{Match: xdsresource.RouteMatch{
			QueryParams: []xdsresource.QueryParamMatcher{{Name: "x", Match: xdsresource.StringMatcher{Kind: 99}}}}}}}}},
		"path kind unknown": {VirtualHosts: []xdsresource.VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []xdsresource.Route{{Match: xdsresource.RouteMatch{PathKind: 99}}}}}},
	} {
		if _, err := Compile(rc); err == nil {
			t.Errorf("%s: compiled without error", name)
		}
	}
}

// one builds a table with a single catch-all virtual host holding the
// named matches as routes, in the given order.
func one(t testing.TB, matches map[string]xdsresource.RouteMatch, order ...string) *Table {
	t.Helper()
	v := xdsresource.VirtualHost{Name: "v", Domains: []string{"*"}}
	for _, name := range order {
		v.Routes = append(v.Routes, xdsresource.Route{Name: name, Match: matches[name], Action: &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: name, Weight: 1}}}})
	}
	return mustCompile(t, &xdsresource.RouteConfig{VirtualHosts: []xdsresource.VirtualHost{v}})
}

func routeName(tb *Table, r *Request) string {
	_, rt := tb.Match(r)
	if rt == nil {
		return ""
	}
	return rt.Name
}

func TestPathMatching(t *testing.T) {
	type m = xdsresource.RouteMatch
	for _, tc := range []struct {
		name  string
		match m
		yes   []string
		no    []string
	}{
		{"prefix", m{PathKind: xdsresource.PathPrefix, Path: "/api"}, []string{"/api", "/api/v1", "/apiary", "/api?x=1"}, []string{"/", "/API", "/ap", "/ap?i"}},
		{"prefix with query text", m{PathKind: xdsresource.PathPrefix, Path: "/a?b"}, nil, []string{"/a?b", "/a?bc"}},
		{"prefix ignore case", m{PathKind: xdsresource.PathPrefix, Path: "/Api", CaseInsensitive: true}, []string{"/API/x", "/api"}, []string{"/ap"}},
		{"exact", m{PathKind: xdsresource.PathExact, Path: "/login"}, []string{"/login", "/login?next=/", "/login#frag"}, []string{"/login/", "/Login", "/logi", "/loginx"}},
		{"exact ignore case", m{PathKind: xdsresource.PathExact, Path: "/Login", CaseInsensitive: true}, []string{"/LOGIN", "/login?x"}, []string{"/login/"}},
		{"separated prefix", m{PathKind: xdsresource.PathSeparatedPrefix, Path: "/v2"}, []string{"/v2", "/v2/", "/v2/x", "/v2?q=1", "/v2#f"}, []string{"/v2x", "/v", "/V2"}},
		{"separated prefix ignore case", m{PathKind: xdsresource.PathSeparatedPrefix, Path: "/v2", CaseInsensitive: true}, []string{"/V2/x"}, []string{"/V2x"}},
		{"regex whole path", m{PathKind: xdsresource.PathRegex, PathRegex: re(`/items/[0-9]+`)}, []string{"/items/42", "/items/42?x=y"}, []string{"/items/42/", "/x/items/42", "/items/"}},
		{"regex unanchored input is anchored", m{PathKind: xdsresource.PathRegex, PathRegex: regexp.MustCompile(`/a`)}, []string{"/a"}, []string{"/ab", "/x/a"}},
		{"regex ignores case_sensitive", m{PathKind: xdsresource.PathRegex, PathRegex: re(`/a`), CaseInsensitive: true}, []string{"/a"}, []string{"/A"}},
	} {
		tb := one(t, map[string]m{"r": tc.match}, "r")
		for _, p := range tc.yes {
			if got := routeName(tb, &Request{Authority: "x", Path: p}); got != "r" {
				t.Errorf("%s: %q did not match", tc.name, p)
			}
		}
		for _, p := range tc.no {
			if got := routeName(tb, &Request{Authority: "x", Path: p}); got != "" {
				t.Errorf("%s: %q matched", tc.name, p)
			}
		}
	}
	// CONNECT carries no path: Envoy's path routes skip it.
	tb := one(t, map[string]m{"r": {PathKind: xdsresource.PathPrefix, Path: "/"}}, "r")
	if v, r := tb.Match(&Request{Method: "CONNECT", Authority: "x"}); v == nil || r != nil {
		t.Errorf("CONNECT: got %s, want the vhost and no route", names(v, r))
	}
}

func TestFirstMatchWins(t *testing.T) {
	type m = xdsresource.RouteMatch
	tb := one(t, map[string]m{
		"api":   {PathKind: xdsresource.PathPrefix, Path: "/api"},
		"exact": {PathKind: xdsresource.PathExact, Path: "/api/v1"},
		"all":   {PathKind: xdsresource.PathPrefix, Path: "/"},
	}, "api", "exact", "all")
	got := []string{
		routeName(tb, &Request{Path: "/api/v1"}),
		routeName(tb, &Request{Path: "/other"}),
	}
	if d := cmp.Diff([]string{"api", "all"}, got); d != "" {
		t.Error(d)
	}
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestHeaderMatching(t *testing.T) {
	type hm = xdsresource.HeaderMatcher
	type sm = xdsresource.StringMatcher
	req := func(h http.Header) *Request {
		return &Request{Method: "GET", Authority: "Reviews:9080", Path: "/p?q=1", Scheme: "http", Header: h}
	}
	for _, tc := range []struct {
		name string
		m    hm
		yes  []*Request
		no   []*Request
	}{
		{"exact", hm{Name: "user", Match: sm{Value: "test-user"}},
			[]*Request{req(header("User", "test-user"))},
			[]*Request{req(header("User", "Test-User")), req(header("User", "test-user2")), req(nil), req(header())}},
		{"exact ignore case", hm{Name: "user", Match: sm{Value: "Test-User", IgnoreCase: true}},
			[]*Request{req(header("User", "TEST-user"))}, []*Request{req(header("User", "test"))}},
		{"exact empty value", hm{Name: "x-e", Match: sm{Value: ""}},
			[]*Request{req(header("X-E", ""))}, []*Request{req(header("X-E", "a")), req(nil)}},
		{"prefix", hm{Name: "x-v", Match: sm{Kind: xdsresource.StringPrefix, Value: "v1"}},
			[]*Request{req(header("X-V", "v1")), req(header("X-V", "v1.2"))}, []*Request{req(header("X-V", "v2")), req(header("X-V", "V1"))}},
		{"suffix ignore case", hm{Name: "x-v", Match: sm{Kind: xdsresource.StringSuffix, Value: ".COM", IgnoreCase: true}},
			[]*Request{req(header("X-V", "a.com"))}, []*Request{req(header("X-V", "com"))}},
		{"contains", hm{Name: "x-v", Match: sm{Kind: xdsresource.StringContains, Value: "mid"}},
			[]*Request{req(header("X-V", "amidst"))}, []*Request{req(header("X-V", "aMIDst"))}},
		{"contains ignore case", hm{Name: "x-v", Match: sm{Kind: xdsresource.StringContains, Value: "MiD", IgnoreCase: true}},
			[]*Request{req(header("X-V", "aMIDst")), req(header("X-V", "mid"))}, []*Request{req(header("X-V", "mi"))}},
		{"regex", hm{Name: "x-v", Match: sm{Kind: xdsresource.StringRegex, Regex: re(`v[0-9]`)}},
			[]*Request{req(header("X-V", "v7"))}, []*Request{req(header("X-V", "v77")), req(header("X-V", "av7"))}},
		{"present", hm{Name: "x-canary", Present: true},
			[]*Request{req(header("X-Canary", "")), req(header("X-Canary", "yes"))}, []*Request{req(nil), req(header("Other", "x"))}},
		{"present inverted is absent", hm{Name: "x-canary", Present: true, Invert: true},
			[]*Request{req(nil), req(header("Other", "x"))}, []*Request{req(header("X-Canary", ""))}},
		// Envoy: an inverted value matcher needs the header to be present.
		{"inverted exact", hm{Name: "user", Invert: true, Match: sm{Value: "bot"}},
			[]*Request{req(header("User", "human"))}, []*Request{req(header("User", "bot")), req(nil)}},
		{"repeated header joined with comma", hm{Name: "x-m", Match: sm{Value: "a,b"}},
			[]*Request{req(header("X-M", "a", "X-M", "b"))}, []*Request{req(header("X-M", "a"))}},
		{":method", hm{Name: ":method", Match: sm{Value: "GET"}},
			[]*Request{req(nil)}, []*Request{{Method: "POST", Path: "/"}}},
		{":authority as given", hm{Name: ":authority", Match: sm{Value: "Reviews:9080"}},
			[]*Request{req(nil)}, []*Request{{Authority: "reviews:9080", Path: "/"}}},
		{":path includes the query", hm{Name: ":path", Match: sm{Value: "/p?q=1"}},
			[]*Request{req(nil)}, []*Request{{Path: "/p"}}},
		{":scheme", hm{Name: ":scheme", Match: sm{Value: "http"}},
			[]*Request{req(nil)}, []*Request{{Path: "/", Scheme: "https"}}},
		{"unknown pseudo-header is absent", hm{Name: ":protocol", Present: true, Invert: true},
			[]*Request{req(nil)}, nil},
		{"name case is folded", hm{Name: "X-Mixed-Case", Present: true},
			[]*Request{req(header("x-mixed-case", "1"))}, nil},
	} {
		tb := one(t, map[string]xdsresource.RouteMatch{"r": {PathKind: xdsresource.PathPrefix, Path: "/", Headers: []hm{tc.m}}}, "r")
		for i, r := range tc.yes {
			if routeName(tb, r) != "r" {
				t.Errorf("%s: yes[%d] (%v) did not match", tc.name, i, r.Header)
			}
		}
		for i, r := range tc.no {
			if routeName(tb, r) != "" {
				t.Errorf("%s: no[%d] (%v) matched", tc.name, i, r.Header)
			}
		}
	}
	// Every matcher of a route must match.
	tb := one(t, map[string]xdsresource.RouteMatch{"r": {Headers: []hm{{Name: "a", Present: true}, {Name: "b", Present: true}}}}, "r")
	if routeName(tb, &Request{Path: "/", Header: header("A", "1")}) != "" || routeName(tb, &Request{Path: "/", Header: header("A", "1", "B", "2")}) != "r" {
		t.Error("headers are not ANDed")
	}
}

func TestQueryParamMatching(t *testing.T) {
	type qm = xdsresource.QueryParamMatcher
	type sm = xdsresource.StringMatcher
	for _, tc := range []struct {
		name string
		m    qm
		yes  []string
		no   []string
	}{
		{"exact", qm{Name: "v", Match: sm{Value: "2"}}, []string{"/?v=2", "/x?a=1&v=2", "/?v=2&v=3", "/?v=2#f"}, []string{"/", "/?v=3", "/?v=3&v=2", "/?V=2", "/?v=22", "/v=2", "/?vv=2"}},
		{"raw, not decoded", qm{Name: "q", Match: sm{Value: "a%20b"}}, []string{"/?q=a%20b"}, []string{"/?q=a+b", "/?q=a b"}},
		{"encoded name is not decoded", qm{Name: "a b", Present: true}, []string{"/?a b=1"}, []string{"/?a%20b=1"}},
		{"present", qm{Name: "debug", Present: true}, []string{"/?debug", "/?debug=", "/?x&debug=0"}, []string{"/?debugger=1", "/", "/?"}},
		{"flag has the empty value", qm{Name: "flag", Match: sm{Value: ""}}, []string{"/?flag", "/?flag="}, []string{"/?flag=1", "/"}},
		{"prefix ignore case", qm{Name: "t", Match: sm{Kind: xdsresource.StringPrefix, Value: "ab", IgnoreCase: true}}, []string{"/?t=ABc"}, []string{"/?t=b"}},
		{"regex", qm{Name: "id", Match: sm{Kind: xdsresource.StringRegex, Regex: re(`[0-9]+`)}}, []string{"/?id=12"}, []string{"/?id=1a", "/?id="}},
		{"value with '='", qm{Name: "k", Match: sm{Value: "a=b"}}, []string{"/?k=a=b"}, []string{"/?k=a"}},
		{"empty segments", qm{Name: "k", Match: sm{Value: "1"}}, []string{"/?&&k=1&"}, []string{"/?&&"}},
	} {
		tb := one(t, map[string]xdsresource.RouteMatch{"r": {PathKind: xdsresource.PathPrefix, Path: "/", QueryParams: []qm{tc.m}}}, "r")
		for _, p := range tc.yes {
			if routeName(tb, &Request{Path: p}) != "r" {
				t.Errorf("%s: %q did not match", tc.name, p)
			}
		}
		for _, p := range tc.no {
			if routeName(tb, &Request{Path: p}) != "" {
				t.Errorf("%s: %q matched", tc.name, p)
			}
		}
	}
}

func TestPickCluster(t *testing.T) {
	a := &xdsresource.RouteAction{TotalWeight: 100, Clusters: []xdsresource.WeightedCluster{{Name: "v1", Weight: 90}, {Name: "v2", Weight: 10}}}
	got := map[string]int{}
	for rnd := uint64(0); rnd < 10000; rnd++ {
		got[PickCluster(a, rnd).Name]++
	}
	if d := cmp.Diff(map[string]int{"v1": 9000, "v2": 1000}, got); d != "" {
		t.Errorf("0..9999 (-want +got):\n%s", d)
	}
	// Envoy's walk: [0,90) is v1, [90,100) is v2.
	for rnd, want := range map[uint64]string{0: "v1", 89: "v1", 90: "v2", 99: "v2", 100: "v1", 1<<64 - 1: "v1" /* 2^64-1 mod 100 = 15 */} {
		if got := PickCluster(a, rnd).Name; got != want {
			t.Errorf("rnd %d: got %s, want %s", rnd, got, want)
		}
	}
	// A wrong TotalWeight does not skew the split.
	b := &xdsresource.RouteAction{TotalWeight: 7, Clusters: []xdsresource.WeightedCluster{{Name: "a", Weight: 1}, {Name: "zero", Weight: 0}, {Name: "c", Weight: 3}}}
	got = map[string]int{}
	for rnd := uint64(0); rnd < 4000; rnd++ {
		got[PickCluster(b, rnd).Name]++
	}
	if d := cmp.Diff(map[string]int{"a": 1000, "c": 3000}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if c := PickCluster(&xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: "only"}}}, 5); c == nil || c.Name != "only" {
		t.Errorf("single cluster: got %v", c)
	}
	if c := PickCluster(&xdsresource.RouteAction{}, 5); c != nil {
		t.Errorf("no cluster: got %v", c)
	}
	if c := PickCluster(&xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: "a"}, {Name: "b"}}}, 5); c != nil {
		t.Errorf("all zero: got %v", c)
	}
}

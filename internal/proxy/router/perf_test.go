package router

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// bigConfig is a mesh-sized route config: n services, each with its
// domains in every name form with and without the port, as the translator
// emits them, and 10 routes mixing the kinds of matchers it emits.
func bigConfig(n int) *xdsresource.RouteConfig {
	rc := &xdsresource.RouteConfig{Name: "8080"}
	for i := range n {
		svc := fmt.Sprintf("svc-%d", i)
		var domains []string
		for _, d := range []string{svc + ".ns.svc.cluster.local", svc + ".ns", svc + ".ns.svc", svc, fmt.Sprintf("10.96.%d.%d", i/256, i%256)} {
			domains = append(domains, d, d+":8080")
		}
		action := func(c string) *xdsresource.RouteAction {
			return &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: c + "-v1", Weight: 90}, {Name: c + "-v2", Weight: 10}}, TotalWeight: 100}
		}
		v := xdsresource.VirtualHost{Name: svc, Domains: domains}
		for j := range 8 {
			v.Routes = append(v.Routes, xdsresource.Route{Name: fmt.Sprintf("exact-%d", j), Match: xdsresource.RouteMatch{PathKind: xdsresource.PathExact, Path: fmt.Sprintf("/api/v%d/items", j)}, Action: action(svc)})
		}
		v.Routes = append(v.Routes,
			xdsresource.Route{Name: "header", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathPrefix, Path: "/", Headers: []xdsresource.HeaderMatcher{{Name: "user", Match: xdsresource.StringMatcher{Value: "test-user"}}}}, Action: action(svc)},
			xdsresource.Route{Name: "query", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathPrefix, Path: "/", QueryParams: []xdsresource.QueryParamMatcher{{Name: "v", Match: xdsresource.StringMatcher{Value: "2"}}}}, Action: action(svc)},
			xdsresource.Route{Name: "prefix", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathPrefix, Path: "/"}, Action: action(svc)},
		)
		rc.VirtualHosts = append(rc.VirtualHosts, v)
	}
	rc.VirtualHosts = append(rc.VirtualHosts, vh("allow_any", "*"))
	return rc
}

var perfRequests = map[string]*Request{
	"exact":  {Method: "GET", Authority: "svc-500.ns.svc.cluster.local:8080", Path: "/api/v3/items?x=1", Header: http.Header{"Accept": {"*/*"}}},
	"header": {Method: "GET", Authority: "svc-999:8080", Path: "/reviews/1", Header: http.Header{"User": {"test-user"}, "Accept": {"*/*"}}},
	"query":  {Method: "GET", Authority: "svc-1.ns", Path: "/reviews/1?a=b&v=2", Header: http.Header{}},
	"prefix": {Method: "GET", Authority: "SVC-42.ns.svc:8080", Path: "/reviews/1", Header: http.Header{}},
	"none":   {Method: "GET", Authority: "unknown.example.com", Path: "/", Header: http.Header{}},
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tb := mustCompile(t, bigConfig(1000))
	for name, r := range perfRequests {
		want := map[string]string{"exact": "exact-3", "none": "allow_any"}[name]
		if want == "" {
			want = name
		}
		if _, rt := tb.Match(r); rt == nil || rt.Name != want {
			t.Fatalf("%s: matched %v", name, rt)
		}
		if n := testing.AllocsPerRun(100, func() { tb.Match(r) }); n != 0 {
			t.Errorf("Match(%s): %v allocations, want 0", name, n)
		}
	}
	_, rt := tb.Match(perfRequests["header"])
	if n := testing.AllocsPerRun(100, func() { PickCluster(rt.Action, 12345) }); n != 0 {
		t.Errorf("PickCluster: %v allocations, want 0", n)
	}
	htb, a := hashTable(t, xdsresource.HashPolicy{Kind: xdsresource.HashHeader, Name: "x-user"}, xdsresource.HashPolicy{Kind: xdsresource.HashCookie, Name: "s"},
		xdsresource.HashPolicy{Kind: xdsresource.HashSourceIP}, xdsresource.HashPolicy{Kind: xdsresource.HashQueryParam, Name: "q"})
	hr := &Request{Path: "/?q=1", Header: http.Header{"X-User": {"a", "b"}, "Cookie": {"t=1; s=2"}}, SourceIP: netip.MustParseAddr("fd00::1")}
	if n := testing.AllocsPerRun(100, func() { htb.Hash(a, hr) }); n != 0 {
		t.Errorf("Hash: %v allocations, want 0", n)
	}
}

// BenchmarkMatch routes over 1,000 virtual hosts of 10 routes each: the
// vhost lookup is a map probe, so cost depends on the routes scanned, not
// on the number of hosts.
func BenchmarkMatch(b *testing.B) {
	tb := mustCompile(b, bigConfig(1000))
	for _, name := range []string{"exact", "header", "query", "prefix", "none"} {
		r := perfRequests[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tb.Match(r)
			}
		})
	}
}

func BenchmarkPickCluster(b *testing.B) {
	a := &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: "v1", Weight: 90}, {Name: "v2", Weight: 10}}}
	b.ReportAllocs()
	var rnd uint64
	for b.Loop() {
		rnd += 0x9e3779b97f4a7c15
		PickCluster(a, rnd)
	}
}

func BenchmarkHashHeader(b *testing.B) {
	tb, a := hashTable(b, xdsresource.HashPolicy{Kind: xdsresource.HashHeader, Name: "x-user"})
	r := &Request{Path: "/", Header: http.Header{"X-User": {"some-user-id-1234"}}}
	b.ReportAllocs()
	for b.Loop() {
		tb.Hash(a, r)
	}
}

func FuzzMatch(f *testing.F) {
	rc := bigConfig(3)
	rc.VirtualHosts = append(rc.VirtualHosts[:len(rc.VirtualHosts)-1],
		xdsresource.VirtualHost{Name: "w", Domains: []string{"*.foo.com", "*-bar.foo.com", "foo.*", "*"}, Routes: []xdsresource.Route{
			{Name: "re", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathRegex, PathRegex: re(`/r/[a-z]+`), Headers: []xdsresource.HeaderMatcher{{Name: "x", Invert: true, Match: xdsresource.StringMatcher{Kind: xdsresource.StringContains, Value: "Ab", IgnoreCase: true}}}}},
			{Name: "sep", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathSeparatedPrefix, Path: "/Sep", CaseInsensitive: true, QueryParams: []xdsresource.QueryParamMatcher{{Name: "q", Present: true}}}},
			{Name: "suffix", Match: xdsresource.RouteMatch{Headers: []xdsresource.HeaderMatcher{{Name: ":path", Match: xdsresource.StringMatcher{Kind: xdsresource.StringSuffix, Value: "Z", IgnoreCase: true}}}}},
			{Name: "all", Match: xdsresource.RouteMatch{PathKind: xdsresource.PathPrefix, Path: "/"},
				Action: &xdsresource.RouteAction{Clusters: []xdsresource.WeightedCluster{{Name: "a", Weight: 1}, {Name: "b", Weight: 2}},
					HashPolicies: []xdsresource.HashPolicy{{Kind: xdsresource.HashHeader, Name: "x"}, {Kind: xdsresource.HashCookie, Name: "c"}, {Kind: xdsresource.HashQueryParam, Name: "q"}}}},
		}})
	tb := mustCompile(f, rc)
	f.Add("svc-1:8080", "/api/v1/items?v=2", "user", "test-user", uint64(7))
	f.Add("a-bar.foo.com", "/Sep/x?q", "x", "zab", uint64(0))
	f.Add("foo.", "/r/abc#frag", "cookie", "c=\"x\"; d", uint64(1<<63))
	f.Add("", "", "", "", uint64(0))
	f.Fuzz(func(t *testing.T, authority, path, name, value string, rnd uint64) {
		r := &Request{Method: "GET", Authority: authority, Path: path, Header: http.Header{http.CanonicalHeaderKey(name): {value, value}}}
		v, rt := tb.Match(r)
		if rt != nil && v == nil {
			t.Fatal("route without virtual host")
		}
		if rt != nil && rt.Action != nil {
			if c := PickCluster(rt.Action, rnd); c == nil {
				t.Fatal("no cluster picked")
			}
			tb.Hash(rt.Action, r)
		}
	})
}

package translate_test

import (
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// rootVS routes ratings: /productpage is delegated, the rest goes to
// ratings. delegate is the delegate reference's YAML.
func rootVS(delegate string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-root}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /productpage}}]
    delegate: ` + delegate + `
  - route: [{destination: {host: ratings}}]
`
}

// delegateVS is a delegate (no hosts) named pp in ns with the given http
// routes (YAML list items, indented by four spaces) and extra spec lines.
func delegateVS(ns, extra, http string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pp, namespace: ` + ns + `}
spec:
` + extra + `  http:
` + http
}

// summary is one Envoy route as a test reads it: its match and where it
// goes.
type summary struct {
	Path    string
	Headers []string
	To      string
}

func summarize(routes []*routev3.Route) []summary {
	var out []summary
	for _, r := range routes {
		s := summary{}
		switch m := r.GetMatch(); {
		case m.GetPrefix() != "":
			s.Path = "prefix " + m.GetPrefix()
		case m.GetPath() != "":
			s.Path = "exact " + m.GetPath()
		case m.GetSafeRegex() != nil:
			s.Path = "regex " + m.GetSafeRegex().GetRegex()
		}
		for _, h := range r.GetMatch().GetHeaders() {
			v := h.GetStringMatch().GetExact() + h.GetStringMatch().GetPrefix()
			if h.GetInvertMatch() {
				v = "!" + v
			}
			s.Headers = append(s.Headers, h.GetName()+"="+v)
		}
		for _, w := range weights(r) {
			s.To += w.Name
		}
		out = append(out, s)
	}
	return out
}

// ratingsRoutes translates for the default sidecar and returns the routes
// of the ratings virtual host, after checking the sidecar's decoder takes
// the whole port's configuration.
func ratingsRoutes(t *testing.T, w *translate.World) []*routev3.Route {
	t.Helper()
	r := translate.ForProxy(w, sidecarProxy, nil)
	rc := findRoute(t, r, "9080")
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xdsresource.DecodeRouteConfig(b); err != nil {
		t.Fatalf("the sidecar would refuse route configuration 9080: %v", err)
	}
	return vhost(t, rc, "ratings.default.svc.cluster.local:9080").Routes
}

const (
	toRatings = "outbound|9080||ratings.default.svc.cluster.local"
	toV1      = "outbound|9080||reviews-v1.default.svc.cluster.local"
	toV2      = "outbound|9080||reviews-v2.default.svc.cluster.local"
)

// The root's match is merged into each delegate route: a delegate route
// with a header match gets the root's uri prefix as well; one without a
// match inherits the root's; the root's own routes keep their place.
func TestDelegateMergesRootMatch(t *testing.T) {
	w := world(t, "testdata/mesh", rootVS("{name: pp}"), delegateVS("default", "", `  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews-v2}}]
  - route: [{destination: {host: reviews-v1}}]
`))
	want := []summary{
		{Path: "prefix /productpage", Headers: []string{"end-user=jason"}, To: toV2},
		{Path: "prefix /productpage", To: toV1},
		{Path: "prefix /", To: toRatings},
	}
	if d := cmp.Diff(want, summarize(ratingsRoutes(t, w))); d != "" {
		t.Fatalf("routes (-want +got):\n%s", d)
	}
	if p := translate.RouteProblems(w); len(p) != 0 {
		t.Errorf("problems %v, want none", p)
	}
}

// Istio's merge rules, one delegate route per case under a root matching
// uri prefix /productpage: a delegate match must lie within the root's,
// or the delegate route is dropped.
func TestDelegateMatchRules(t *testing.T) {
	rest := summary{Path: "prefix /", To: toRatings}
	for _, c := range []struct {
		name, match string
		want        []summary // the delegate's routes, before rest
	}{
		{"longer prefix narrows", `[{uri: {prefix: /productpage/v1}}]`, []summary{{Path: "prefix /productpage/v1", To: toV1}}},
		{"exact under the prefix", `[{uri: {exact: /productpage/x}}]`, []summary{{Path: "exact /productpage/x", To: toV1}}},
		{"other prefix conflicts", `[{uri: {prefix: /reviews}}]`, nil},
		{"shorter prefix conflicts", `[{uri: {prefix: /product}}]`, nil},
		{"regex conflicts", `[{uri: {regex: "/productpage/.*"}}]`, nil},
		{"ignoreUriCase must agree", `[{uri: {prefix: /productpage/v1}, ignoreUriCase: true}]`, nil},
		{"one block of two fits", `[{uri: {prefix: /reviews}}, {uri: {prefix: /productpage/a}}]`, nil},
		{"each block fits", `[{uri: {prefix: /productpage/a}}, {headers: {x: {exact: "1"}}}]`, []summary{
			{Path: "prefix /productpage/a", To: toV1},
			{Path: "prefix /productpage", Headers: []string{"x=1"}, To: toV1},
		}},
		{"withoutHeaders is kept", `[{withoutHeaders: {x: {exact: "1"}}}]`, []summary{{Path: "prefix /productpage", Headers: []string{"x=!1"}, To: toV1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := world(t, "testdata/mesh", rootVS("{name: pp}"), delegateVS("default", "", `  - match: `+c.match+`
    route: [{destination: {host: reviews-v1}}]
`))
			want := append(c.want, rest)
			if d := cmp.Diff(want, summarize(ratingsRoutes(t, w))); d != "" {
				t.Fatalf("routes (-want +got):\n%s", d)
			}
			problems := translate.RouteProblems(w)
			if c.want == nil {
				if len(problems) != 1 || problems[0].Object.Name != "pp" || problems[0].Path != "spec.http[0].match" || !problems[0].OutsideRoot {
					t.Fatalf("problems %v, want one about pp spec.http[0].match, outside the root", problems)
				}
			} else if len(problems) != 0 {
				t.Fatalf("problems %v, want none", problems)
			}
		})
	}
}

// A root without a match hands over all its traffic: the delegate's own
// matches apply as written. A header in both takes the delegate's value
// only when it narrows the root's (equal exact values).
func TestDelegateMatchInheritance(t *testing.T) {
	root := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-root}
spec:
  hosts: [ratings]
  http:
  - match: [{headers: {x: {exact: "1"}}, uri: {prefix: /a}}]
    delegate: {name: pp}
  - delegate: {name: pp}
`
	w := world(t, "testdata/mesh", root, delegateVS("default", "", `  - match: [{headers: {x: {exact: "1"}, z: {prefix: p}}}]
    route: [{destination: {host: reviews-v2}}]
  - match: [{uri: {prefix: /b}}]
    route: [{destination: {host: reviews-v1}}]
`))
	want := []summary{
		{Path: "prefix /a", Headers: []string{"x=1", "z=p"}, To: toV2},
		// pp's second route has /b, outside /a: dropped under the first root route.
		{Path: "prefix /", Headers: []string{"x=1", "z=p"}, To: toV2},
		{Path: "prefix /b", To: toV1},
	}
	if d := cmp.Diff(want, summarize(ratingsRoutes(t, w))); d != "" {
		t.Fatalf("routes (-want +got):\n%s", d)
	}
}

// Route-level settings of the root route (headers, rewrite) apply to the
// delegate's routes that set none; the delegate's own win.
func TestDelegateInheritsRootSettings(t *testing.T) {
	root := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-root}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /productpage}}]
    headers: {request: {set: {x-from: root}}}
    rewrite: {uri: /pp}
    delegate: {name: pp}
`
	w := world(t, "testdata/mesh", root, delegateVS("default", "", `  - match: [{uri: {prefix: /productpage/own}}]
    headers: {request: {set: {x-from: delegate}}}
    rewrite: {uri: /own}
    route: [{destination: {host: reviews-v2}}]
  - route: [{destination: {host: reviews-v1}}]
`))
	routes := ratingsRoutes(t, w)
	if len(routes) != 2 {
		t.Fatalf("routes %v, want 2", summarize(routes))
	}
	for i, want := range []struct{ header, rewrite string }{{"delegate", "/own"}, {"root", "/pp"}} {
		r := routes[i]
		if h := r.GetRequestHeadersToAdd(); len(h) != 1 || h[0].GetHeader().GetValue() != want.header {
			t.Errorf("route %d request headers %v, want x-from: %s", i, h, want.header)
		}
		if got := r.GetRoute().GetPrefixRewrite(); got != want.rewrite {
			t.Errorf("route %d prefix rewrite %q, want %q", i, got, want.rewrite)
		}
	}
}

// A delegate in another namespace is named with namespace; the hosts it
// routes to resolve in its own namespace, not the root's.
func TestDelegateInOtherNamespace(t *testing.T) {
	backend := `apiVersion: v1
kind: Service
metadata: {name: backend, namespace: team}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 9080}]
`
	w := world(t, "testdata/mesh", backend, rootVS("{name: pp, namespace: team}"), delegateVS("team", "", `  - route: [{destination: {host: backend}}]
`))
	want := []summary{
		{Path: "prefix /productpage", To: "outbound|9080||backend.team.svc.cluster.local"},
		{Path: "prefix /", To: toRatings},
	}
	if d := cmp.Diff(want, summarize(ratingsRoutes(t, w))); d != "" {
		t.Fatalf("routes (-want +got):\n%s", d)
	}
}

// Delegations that cannot be followed drop only the delegating route, and
// say why at the delegate field; the rest of the port is served.
func TestDelegateNotUsable(t *testing.T) {
	otherRoot := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pp}
spec:
  hosts: [reviews-v1]
  http:
  - route: [{destination: {host: reviews-v1}}]
`
	for _, c := range []struct {
		name   string
		config []string
		detail string
	}{
		{"missing", []string{rootVS("{name: pp}")}, "delegate VirtualService default/pp not found"},
		{"missing in the root's namespace by default", []string{rootVS("{name: pp}"), delegateVS("team", "", "  - route: [{destination: {host: reviews-v1}}]\n")}, "default/pp not found"},
		{"hidden by exportTo", []string{rootVS("{name: pp, namespace: team}"), delegateVS("team", "  exportTo: [.]\n", "  - route: [{destination: {host: reviews-v1}}]\n")}, "not exported to namespace default"},
		{"not a delegate", []string{rootVS("{name: pp}"), otherRoot}, "has hosts, so it is not a delegate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := world(t, "testdata/mesh", c.config...)
			if d := cmp.Diff([]summary{{Path: "prefix /", To: toRatings}}, summarize(ratingsRoutes(t, w))); d != "" {
				t.Fatalf("routes (-want +got):\n%s", d)
			}
			problems := translate.RouteProblems(w)
			if len(problems) != 1 || problems[0].Object.Name != "ratings-root" || problems[0].Path != "spec.http[0].delegate" || !strings.Contains(problems[0].Detail, c.detail) {
				t.Fatalf("problems %v, want one at ratings-root spec.http[0].delegate saying %q", problems, c.detail)
			}
		})
	}
}

// A root that delegates to another root is refused at the delegate field
// (delegation is one level deep); the other root keeps routing its own
// host. A delegate that itself delegates (which validation refuses, so
// only a hand-built world has one) gets those routes dropped.
func TestDelegateChain(t *testing.T) {
	second := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: middle}
spec:
  hosts: [reviews-v1]
  http:
  - delegate: {name: pp}
`
	w := world(t, "testdata/mesh", rootVS("{name: middle}"), second, delegateVS("default", "", "  - route: [{destination: {host: reviews-v2}}]\n"))
	if d := cmp.Diff([]summary{{Path: "prefix /", To: toRatings}}, summarize(ratingsRoutes(t, w))); d != "" {
		t.Fatalf("routes (-want +got):\n%s", d)
	}
	problems := translate.RouteProblems(w)
	if len(problems) != 1 || problems[0].Path != "spec.http[0].delegate" || !strings.Contains(problems[0].Detail, "delegation is one level deep") {
		t.Fatalf("problems %v, want one saying delegation is one level deep", problems)
	}

	// The delegate's routes: a delegate route that delegates again.
	leaf := delegateVS("default", "", "  - route: [{destination: {host: reviews-v2}}]\n  - route: [{destination: {host: reviews-v1}}]\n")
	w = world(t, "testdata/mesh", rootVS("{name: pp}"), leaf)
	for _, o := range w.Snap.OfKind(config.VirtualService) {
		if o.Name == "pp" {
			hr := o.Spec.(*networking.VirtualService).Http[0]
			hr.Route, hr.Delegate = nil, &networking.Delegate{Name: "other"}
		}
	}
	w = translate.NewWorld(w.Snap)
	want := []summary{{Path: "prefix /productpage", To: toV1}, {Path: "prefix /", To: toRatings}}
	if d := cmp.Diff(want, summarize(ratingsRoutes(t, w))); d != "" {
		t.Fatalf("routes (-want +got):\n%s", d)
	}
	problems = translate.RouteProblems(w)
	if len(problems) != 1 || problems[0].Object.Name != "pp" || problems[0].Path != "spec.http[0].delegate" || !strings.Contains(problems[0].Detail, "cannot delegate again") {
		t.Fatalf("problems %v, want one at pp spec.http[0].delegate", problems)
	}
}

// Delegates route nothing on their own, and a VirtualService whose
// translation the sidecar would refuse loses only the refused routes: the
// port's configuration still decodes, and the finding names the object and
// the http route. (The world is edited after validation, as only a bug
// could produce such a route.)
func TestRefusedRouteIsDropped(t *testing.T) {
	vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-root}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {prefix: /b}}, {uri: {prefix: /c}}]
    route: [{destination: {host: reviews-v2}}]
  - route: [{destination: {host: ratings}}]
`
	w := world(t, "testdata/mesh", vs)
	for _, o := range w.Snap.OfKind(config.VirtualService) {
		if o.Name == "ratings-root" {
			// No destination: an empty weighted_clusters, which the
			// sidecar refuses.
			o.Spec.(*networking.VirtualService).Http[1].Route = nil
		}
	}
	w = translate.NewWorld(w.Snap)
	want := []summary{{Path: "prefix /a", To: toV1}, {Path: "prefix /", To: toRatings}}
	if d := cmp.Diff(want, summarize(ratingsRoutes(t, w))); d != "" {
		t.Fatalf("routes (-want +got):\n%s", d)
	}
	problems := translate.RouteProblems(w)
	if len(problems) != 1 {
		t.Fatalf("problems %v, want one (the same for both match blocks of spec.http[1])", problems)
	}
	for _, p := range problems {
		if p.Object.Name != "ratings-root" || p.Path != "spec.http[1]" || !strings.Contains(p.Detail, "the proxy would refuse this route") || !strings.Contains(p.Detail, "weighted_clusters") {
			t.Errorf("problem %v, want ratings-root spec.http[1] refused for its weighted_clusters", p)
		}
	}
}

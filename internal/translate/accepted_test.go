package translate_test

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/translate"
)

// Config the validator accepts is translated with its meaning (issue 12);
// the end-to-end half of each case is in internal/proxy/sidecar's
// translatefix_test.go.

// A VirtualService route's timeout reaches the route; without one the
// timeout is 0 (none), Istio's default. grpc-go reads
// max_stream_duration instead, so proxyless clients get it there too.
func TestVirtualServiceTimeout(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /slow}}]
    timeout: 1.5s
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "ratings.default.svc.cluster.local:9080")
	if got := vh.Routes[0].GetRoute().GetTimeout().AsDuration(); got != 1500*time.Millisecond {
		t.Errorf("route with timeout: 1.5s has timeout %s", got)
	}
	if d := vh.Routes[1].GetRoute().GetTimeout(); d == nil || d.AsDuration() != 0 {
		t.Errorf("route without a timeout has timeout %v, want an explicit 0 (none)", d)
	}
	if vh.Routes[0].GetRoute().GetMaxStreamDuration() != nil {
		t.Errorf("sidecar route has max_stream_duration %v, want none (the proxy reads timeout)", vh.Routes[0].GetRoute().GetMaxStreamDuration())
	}

	g := translate.ForProxy(w, grpcProxy, nil)
	gvh := vhost(t, findRoute(t, g, "ratings.default.svc.cluster.local:9080"), "ratings.default.svc.cluster.local:9080")
	if got := gvh.Routes[0].GetRoute().GetMaxStreamDuration().GetMaxStreamDuration().AsDuration(); got != 1500*time.Millisecond {
		t.Errorf("grpc route max_stream_duration %s, want 1.5s", got)
	}
}

// A route to a DestinationRule subset hashes as the subset's cluster
// balances: the subset's own consistentHash, a port-level one over it,
// the top-level policy for subsets without one; a destination on another
// host takes that host's DestinationRule, not the routed host's.
func TestSubsetConsistentHash(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-top}
  subsets:
  - name: own
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-own}
  - name: byport
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-own}
      portLevelSettings:
      - port: {number: 9080}
        loadBalancer:
          consistentHash: {httpQueryParameterName: q}
  - name: plain
    labels: {version: v1}
  - name: rr
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
`, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /own}}]
    route: [{destination: {host: ratings, subset: own}}]
  - match: [{uri: {prefix: /byport}}]
    route: [{destination: {host: ratings, subset: byport}}]
  - match: [{uri: {prefix: /plain}}]
    route: [{destination: {host: ratings, subset: plain}}]
  - match: [{uri: {prefix: /rr}}]
    route: [{destination: {host: ratings, subset: rr}}]
  - match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: ratings, subset: own}, weight: 50}
    - {destination: {host: ratings, subset: plain}, weight: 50}
  - route: [{destination: {host: reviews}}]
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "ratings.default.svc.cluster.local:9080")
	keys := func(i int) []string {
		var out []string
		for _, hp := range vh.Routes[i].GetRoute().GetHashPolicy() {
			switch {
			case hp.GetHeader() != nil:
				out = append(out, "header:"+hp.GetHeader().GetHeaderName())
			case hp.GetQueryParameter() != nil:
				out = append(out, "query:"+hp.GetQueryParameter().GetName())
			default:
				out = append(out, hp.String())
			}
		}
		return out
	}
	for i, want := range [][]string{
		{"header:x-own"},                 // the subset's own policy
		{"query:q"},                      // its port-level setting wins
		{"header:x-top"},                 // no policy of its own: the top level
		nil,                              // ROUND_ROBIN replaces the top-level loadBalancer
		{"header:x-own", "header:x-top"}, // each destination's policy, combined
		nil,                              // reviews' DestinationRule is ROUND_ROBIN
	} {
		if d := cmp.Diff(want, keys(i)); d != "" {
			t.Errorf("route %d (%s) hash policy (-want +got):\n%s", i, vh.Routes[i].GetName(), d)
		}
	}
	for _, c := range []struct {
		subset string
		lb     clusterv3.Cluster_LbPolicy
	}{{"own", clusterv3.Cluster_RING_HASH}, {"byport", clusterv3.Cluster_RING_HASH}, {"plain", clusterv3.Cluster_RING_HASH}, {"rr", clusterv3.Cluster_ROUND_ROBIN}} {
		if got := findCluster(r, "outbound|9080|"+c.subset+"|ratings.default.svc.cluster.local").GetLbPolicy(); got != c.lb {
			t.Errorf("subset %s cluster lb policy %v, want %v", c.subset, got, c.lb)
		}
	}
}

// A match on scheme becomes a :scheme header matcher, as Istio sends it.
func TestSchemeMatch(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{scheme: {exact: https}}]
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "ratings.default.svc.cluster.local:9080")
	hs := vh.Routes[0].GetMatch().GetHeaders()
	if len(hs) != 1 || hs[0].GetName() != ":scheme" || hs[0].GetStringMatch().GetExact() != "https" {
		t.Fatalf("route with scheme: {exact: https} matches headers %v, want :scheme exact https", hs)
	}
	if hs := vh.Routes[1].GetMatch().GetHeaders(); len(hs) != 0 {
		t.Errorf("route without a scheme match matches headers %v", hs)
	}
}

// MeshConfig connectTimeout is every cluster's connect timeout (outbound,
// subsets, inbound, passthrough, blackhole), and a DestinationRule's
// connectionPool.tcp.connectTimeout still wins for its host; without
// MeshConfig it is Istio's 10 s.
func TestMeshConnectTimeout(t *testing.T) {
	const meshCM = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    connectTimeout: 2.5s
`
	const ratingsDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    connectionPool:
      tcp: {connectTimeout: 700ms}
`
	for _, c := range []struct {
		name          string
		extra         []string
		mesh, ratings time.Duration
	}{
		{"default", []string{ratingsDR}, 10 * time.Second, 700 * time.Millisecond},
		{"meshconfig", []string{meshCM, ratingsDR}, 2500 * time.Millisecond, 700 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := translate.ForProxy(world(t, "testdata/mesh", c.extra...), sidecarProxy, nil)
			for name, want := range map[string]time.Duration{
				"outbound|9080||reviews.default.svc.cluster.local":   c.mesh,
				"outbound|9080|v1|reviews.default.svc.cluster.local": c.mesh,
				"inbound|9080||":                                   c.mesh,
				translate.PassthroughCluster:                       c.mesh,
				translate.BlackHoleCluster:                         c.mesh,
				"outbound|9080||ratings.default.svc.cluster.local": c.ratings,
			} {
				cl := findCluster(r, name)
				if cl == nil {
					t.Errorf("no cluster %s", name)
					continue
				}
				if got := cl.GetConnectTimeout().AsDuration(); got != want {
					t.Errorf("cluster %s connect timeout %s, want %s", name, got, want)
				}
			}
		})
	}
}

// An HTTPRoute RequestRedirect rule becomes a redirect route with the
// Gateway API's defaults (302; the service port, or the scheme's when a
// scheme is set); URLRewrite rewrites the Host and path of each match's
// own copy of the action.
func TestHTTPRouteRedirectAndRewrite(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ratings}
spec:
  parentRefs: [{group: "", kind: Service, name: ratings, port: 9080}]
  rules:
  - matches: [{path: {type: Exact, value: /a}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: example.com}
  - matches: [{path: {type: Exact, value: /b}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /c}}
  - matches: [{path: {type: PathPrefix, value: /d}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: h.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /e}}
    backendRefs: [{name: ratings, port: 9080}]
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "9080"), "ratings.default.svc.cluster.local:9080")
	byPath := map[string]*routev3.Route{}
	for _, rt := range vh.Routes {
		byPath[rt.GetMatch().GetPath()+rt.GetMatch().GetPathSeparatedPrefix()] = rt
	}
	a := byPath["/a"].GetRedirect()
	if a.GetHostRedirect() != "example.com" || a.GetPortRedirect() != 9080 || a.GetResponseCode() != routev3.RedirectAction_FOUND || a.GetSchemeRedirect() != "" {
		t.Errorf("hostname redirect: %v, want host example.com, port 9080, 302", a)
	}
	b := byPath["/b"].GetRedirect()
	if b.GetSchemeRedirect() != "https" || b.GetPortRedirect() != 443 || b.GetResponseCode() != routev3.RedirectAction_MOVED_PERMANENTLY || b.GetPathRedirect() != "/c" {
		t.Errorf("scheme redirect: %v, want https, port 443, 301, path /c", b)
	}
	d := byPath["/d"].GetRoute()
	if d.GetHostRewriteLiteral() != "h.example" || d.GetRegexRewrite().GetPattern().GetRegex() != `^/d(/.*)?$` || d.GetRegexRewrite().GetSubstitution() != `/e\1` {
		t.Errorf("rewrite: %v", d)
	}
	for path, rt := range byPath {
		if path != "/d" && rt.GetRoute().GetRegexRewrite() != nil {
			t.Errorf("route %s shares the rewrite of /d", path)
		}
	}
}

package translate_test

import (
	"sort"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/translate"
)

// shopServices is a Service with two named ports and two backends, for
// GAMMA routes that are not mixed up with testdata/mesh's own routes.
const shopServices = `apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 8080}, {name: http-admin, port: 8081}]
---
apiVersion: v1
kind: Service
metadata: {name: shop-a}
spec:
  selector: {app: shop, version: a}
  ports: [{name: http, port: 8080}, {name: http-admin, port: 8081}]
---
apiVersion: v1
kind: Service
metadata: {name: shop-b}
spec:
  selector: {app: shop, version: b}
  ports: [{name: http, port: 8080}, {name: http-admin, port: 8081}]
`

// clusterHeaders is what one weighted cluster does to headers, in a
// form cmp can compare.
type clusterHeaders struct {
	Name                          string
	Weight                        uint32
	RequestAdd, ResponseAdd       []string // key=value (append action)
	RequestRemove, ResponseRemove []string
}

func options(hs []*corev3.HeaderValueOption) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.GetHeader().GetKey()+"="+h.GetHeader().GetValue()+" ("+h.GetAppendAction().String()+")")
	}
	return out
}

func perCluster(t *testing.T, r *routev3.Route) []clusterHeaders {
	t.Helper()
	wc := r.GetRoute().GetWeightedClusters()
	if wc == nil {
		t.Fatalf("route %s goes to cluster %q, not to a weighted cluster list (per-backend filters need one)", r.GetName(), r.GetRoute().GetCluster())
	}
	var out []clusterHeaders
	for _, c := range wc.GetClusters() {
		out = append(out, clusterHeaders{
			Name: c.GetName(), Weight: c.GetWeight().GetValue(),
			RequestAdd: options(c.GetRequestHeadersToAdd()), ResponseAdd: options(c.GetResponseHeadersToAdd()),
			RequestRemove: c.GetRequestHeadersToRemove(), ResponseRemove: c.GetResponseHeadersToRemove(),
		})
	}
	return out
}

const (
	set      = " (OVERWRITE_IF_EXISTS_OR_ADD)"
	appendOp = " (APPEND_IF_EXISTS_OR_ADD)"
)

// HTTPRoute backendRef filters apply only when that backend is chosen:
// RequestHeaderModifier and ResponseHeaderModifier land on the backend's
// own weighted cluster, the rule's filters stay on the route, and a
// backend without filters gets none.
func TestHTTPRouteBackendFilters(t *testing.T) {
	w := world(t, "testdata/mesh", shopServices, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: shop, port: 8080}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-rule, value: all}]}
    backendRefs:
    - name: shop-a
      port: 8080
      weight: 3
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-backend, value: a}]
          add: [{name: x-extra, value: "1"}]
          remove: [x-drop]
      - type: ResponseHeaderModifier
        responseHeaderModifier:
          set: [{name: x-served-by, value: a}]
          remove: [server]
    - {name: shop-b, port: 8080, weight: 1}
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "8080"), "shop.default.svc.cluster.local:8080")
	if len(vh.Routes) != 1 {
		t.Fatalf("want 1 route, got %d", len(vh.Routes))
	}
	rt := vh.Routes[0]
	want := []clusterHeaders{
		{
			Name: "outbound|8080||shop-a.default.svc.cluster.local", Weight: 3,
			RequestAdd:    []string{"x-backend=a" + set, "x-extra=1" + appendOp},
			RequestRemove: []string{"x-drop"},
			ResponseAdd:   []string{"x-served-by=a" + set}, ResponseRemove: []string{"server"},
		},
		{Name: "outbound|8080||shop-b.default.svc.cluster.local", Weight: 1},
	}
	if d := cmp.Diff(want, perCluster(t, rt)); d != "" {
		t.Errorf("weighted clusters (-want +got):\n%s", d)
	}
	if got := options(rt.GetRequestHeadersToAdd()); !cmp.Equal(got, []string{"x-rule=all" + set}) {
		t.Errorf("route request headers %v, want only the rule's x-rule", got)
	}
}

// One backend with filters still becomes a (one-entry) weighted cluster
// list, where per-backend headers live; filters that are not header
// modifiers are skipped and leave the plain cluster.
func TestHTTPRouteSingleBackendFilters(t *testing.T) {
	w := world(t, "testdata/mesh", shopServices, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: shop, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs:
    - name: shop-a
      port: 8080
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-from, value: a}]}
  - backendRefs:
    - name: shop-b
      port: 8080
      filters:
      - type: RequestMirror
        requestMirror: {backendRef: {name: shop-a, port: 8080}}
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "8080"), "shop.default.svc.cluster.local:8080")
	if len(vh.Routes) != 2 {
		t.Fatalf("want 2 routes, got %d", len(vh.Routes))
	}
	want := []clusterHeaders{{Name: "outbound|8080||shop-a.default.svc.cluster.local", Weight: 1, ResponseAdd: []string{"x-from=a" + appendOp}}}
	if d := cmp.Diff(want, perCluster(t, vh.Routes[0])); d != "" {
		t.Errorf("single backend with a header filter (-want +got):\n%s", d)
	}
	if got := vh.Routes[1].GetRoute().GetCluster(); got != "outbound|8080||shop-b.default.svc.cluster.local" {
		t.Errorf("backend with only a mirror filter routes to %v, want the plain cluster shop-b", vh.Routes[1].GetRoute())
	}
}

// GRPCRoute backendRef header filters land on their backend's weighted
// cluster as HTTPRoute's do. Proxyless grpc-go applies no header
// mutations, so its routes carry none, as for VirtualService headers.
func TestGRPCRouteBackendFilters(t *testing.T) {
	w := world(t, "testdata/mesh", `apiVersion: v1
kind: Service
metadata: {name: rpc}
spec:
  selector: {app: rpc}
  ports: [{name: grpc, port: 7171}]
---
apiVersion: v1
kind: Service
metadata: {name: rpc-a}
spec:
  selector: {app: rpc, version: a}
  ports: [{name: grpc, port: 7171}]
`, `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc}
spec:
  parentRefs: [{group: "", kind: Service, name: rpc, port: 7171}]
  rules:
  - backendRefs:
    - name: rpc-a
      port: 7171
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: x-backend, value: a}]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {remove: [x-internal]}
`)
	r := translate.ForProxy(w, sidecarProxy, nil)
	vh := vhost(t, findRoute(t, r, "7171"), "rpc.default.svc.cluster.local:7171")
	want := []clusterHeaders{{Name: "outbound|7171||rpc-a.default.svc.cluster.local", Weight: 1,
		RequestAdd: []string{"x-backend=a" + set}, ResponseRemove: []string{"x-internal"}}}
	if d := cmp.Diff(want, perCluster(t, vh.Routes[0])); d != "" {
		t.Errorf("weighted clusters (-want +got):\n%s", d)
	}

	g := translate.ForProxy(w, grpcProxy, nil)
	gvh := vhost(t, findRoute(t, g, "rpc.default.svc.cluster.local:7171"), "rpc.default.svc.cluster.local:7171")
	if got := gvh.Routes[0].GetRoute().GetCluster(); got != "outbound|7171||rpc-a.default.svc.cluster.local" {
		t.Errorf("proxyless route %v, want the plain cluster rpc-a", gvh.Routes[0].GetRoute())
	}
}

// In GAMMA a parentRef's sectionName names a port of the Service: the
// route attaches to that port only, and with a port set as well both must
// match. A sectionName no port has attaches the route nowhere.
func TestGAMMASectionName(t *testing.T) {
	route := func(name, parent string) string {
		return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ` + name + `}
spec:
  parentRefs: [{group: "", kind: Service, name: shop, ` + parent + `}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /` + name + `}}]
    backendRefs: [{name: shop-a, port: 8080}]
`
	}
	w := world(t, "testdata/mesh", shopServices,
		route("by-name", "sectionName: http"),
		route("name-and-port", "sectionName: http, port: 8080"),
		route("name-other-port", "sectionName: http, port: 8081"),
		route("no-such-port", "sectionName: grpc"),
		route("admin", "sectionName: http-admin"),
	)
	r := translate.ForProxy(w, sidecarProxy, nil)
	attached := func(port string) []string {
		var out []string
		for _, rt := range vhost(t, findRoute(t, r, port), "shop.default.svc.cluster.local:"+port).Routes {
			out = append(out, rt.GetMatch().GetPathSeparatedPrefix())
		}
		sort.Strings(out)
		return out
	}
	if d := cmp.Diff([]string{"/by-name", "/name-and-port"}, attached("8080")); d != "" {
		t.Errorf("routes on port 8080 (http) (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"/admin"}, attached("8081")); d != "" {
		t.Errorf("routes on port 8081 (http-admin) (-want +got):\n%s", d)
	}
}

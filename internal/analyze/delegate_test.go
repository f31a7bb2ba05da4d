package analyze

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

const productpageRoot = `
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: shop}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: shop}
spec:
  hosts: [productpage]
  http:
  - match: [{uri: {prefix: /productpage}}]
    delegate: {name: pp}
  - match: [{uri: {prefix: /team}}]
    delegate: {name: team-routes, namespace: team}
  - match: [{uri: {prefix: /chain}}]
    delegate: {name: other-root}
  - route: [{destination: {host: productpage}}]
`

// Delegations that cannot be followed are Errors at the delegate field of
// the root; a delegate route outside its root's match is a Warning at the
// delegate's match. Delegations that work say nothing.
func TestDelegateFindings(t *testing.T) {
	root := parse(t, "root.yaml", productpageRoot)
	otherRoot := parse(t, "other.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other-root, namespace: shop}
spec:
  hosts: [other]
  http:
  - route: [{destination: {host: productpage}}]
`)
	hidden := parse(t, "team.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: team-routes, namespace: team}
spec:
  exportTo: [.]
  http:
  - route: [{destination: {host: productpage.shop}}]
`)
	pp := parse(t, "pp.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pp, namespace: shop}
spec:
  http:
  - match: [{uri: {prefix: /productpage/v1}}]
    route: [{destination: {host: productpage}}]
  - match: [{uri: {prefix: /reviews}}]
    route: [{destination: {host: productpage}}]
`)
	check(t, run(root, otherRoot, hidden, pp),
		`Error [TRL0008] (VirtualService shop/productpage root.yaml#2) spec.http[1].delegate: delegate VirtualService team/team-routes is not exported to namespace shop (exportTo [.]); this route is not served: add "shop" to its exportTo`,
		`Error [TRL0008] (VirtualService shop/productpage root.yaml#2) spec.http[2].delegate: VirtualService shop/other-root has hosts, so it is not a delegate; this route is not served: delegate to a VirtualService without hosts`,
		`Warning [TRL0008] (VirtualService shop/pp pp.yaml#1) spec.http[1].match: no match lies within the match of root VirtualService shop/productpage spec.http[0], so this route is not served for that root: narrow the match to a subset of the root's (same or longer uri prefix, same exact values, no regex against a non-regex)`,
	)

	// Without the delegate: not found, named by the namespace it was
	// looked up in (the root's, when the reference names none).
	got := run(root, otherRoot, hidden)
	want := `Error [TRL0008] (VirtualService shop/productpage root.yaml#2) spec.http[0].delegate: delegate VirtualService shop/pp not found; this route is not served (requests it matches go on to the routes after it): create shop/pp, or correct delegate.name/namespace`
	if len(got) == 0 || got[0] != want {
		t.Errorf("messages %q, want first %q", got, want)
	}
}

// A route the sidecar would refuse is reported at the http route it came
// from, whatever produced it: here a route without destinations, which
// validation refuses, so the object is edited after parsing (the analyzer
// must not rely on the validator knowing every rule of the proxy).
func TestRefusedRouteFinding(t *testing.T) {
	root := parse(t, "root.yaml", `
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: shop}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: shop}
spec:
  hosts: [productpage]
  http:
  - route: [{destination: {host: productpage}}]
`)
	root[1].Spec.(*networking.VirtualService).Http[0].Route = nil
	got := run(root)
	if len(got) != 1 || !strings.HasPrefix(got[0], "Error [TRL0008] (VirtualService shop/productpage root.yaml#2) spec.http[0]: the proxy would refuse this route for productpage.shop.svc.cluster.local:9080 (route.weighted_clusters.clusters: total weight must be > 0)") {
		t.Errorf("messages %q, want one TRL0008 at spec.http[0] saying the proxy would refuse it", got)
	}
}

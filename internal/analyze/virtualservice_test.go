package analyze

import "testing"

const reviewsService = `
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: bookinfo
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
`

func TestVirtualServiceSubsets(t *testing.T) {
	vs := parse(t, "vs.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews.bookinfo.svc.cluster.local, subset: v3}
      weight: 10
    mirror: {host: reviews, subset: v4}
  - route:
    - destination: {host: reviews, subset: v1}
    mirrors:
    - destination: {host: reviews.bookinfo, subset: v5}
  tcp:
  - route:
    - destination: {host: reviews.bookinfo.svc, subset: v6}
`)
	// The rule lives elsewhere and names the host in full: it still counts.
	dr := parse(t, "dr.yaml", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: istio-system
spec:
  host: reviews.bookinfo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v6, labels: {version: v6}}
`)
	check(t, run(vs, dr),
		`Error [IST0101] (VirtualService bookinfo/reviews vs.yaml#1) spec.http[0].mirror.subset: Referenced mirror+subset in destinationrule not found: "reviews+v4"`,
		`Error [IST0101] (VirtualService bookinfo/reviews vs.yaml#1) spec.http[0].route[1].destination.subset: Referenced host+subset in destinationrule not found: "reviews.bookinfo.svc.cluster.local+v3"`,
		`Error [IST0101] (VirtualService bookinfo/reviews vs.yaml#1) spec.http[1].mirrors[0].destination.subset: Referenced mirror+subset in destinationrule not found: "reviews.bookinfo+v5"`,
		`Warning [IST0174] (DestinationRule istio-system/reviews dr.yaml#1) spec.host: The host reviews.bookinfo.svc.cluster.local defined in the DestinationRule does not match any services in the mesh.`,
	)
}

// A short host in a DestinationRule resolves in the rule's namespace, not
// the VirtualService's.
func TestVirtualServiceSubsetOtherNamespace(t *testing.T) {
	objs := parse(t, "a.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: other}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
`)
	check(t, run(objs),
		`Error [IST0101] (VirtualService bookinfo/reviews a.yaml#1) spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v1"`,
		`Warning [IST0174] (DestinationRule other/reviews a.yaml#2) spec.host: The host reviews defined in the DestinationRule does not match any services in the mesh.`,
	)
}

func TestVirtualServiceDestinationPort(t *testing.T) {
	vs := parse(t, "vs.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, port: {number: 9080}}
      weight: 50
    - destination: {host: reviews, port: {number: 9090}}
      weight: 50
`)
	check(t, run(vs, parse(t, "svc.yaml", reviewsService)),
		`Error [IST0101] (VirtualService bookinfo/reviews vs.yaml#1) spec.http[0].route[1].destination.port.number: Referenced host:port not found: "reviews:9090"`,
	)
}

// External hosts are allowed: routing to a host no Service or ServiceEntry
// defines is not a finding, whatever the port.
func TestVirtualServiceExternalHost(t *testing.T) {
	vs := parse(t, "vs.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  http:
  - route:
    - destination: {host: api.example.com, port: {number: 443}}
    timeout: 3s
`)
	check(t, run(vs))
}

func TestVirtualServiceGateways(t *testing.T) {
	objs := parse(t, "gw.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [mesh, istio-system/ingress, missing, other, kube-gw, kube-other]
  http:
  - route:
    - destination: {host: web}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["shop/*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: other, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["other.example.com", "elsewhere/shop.example.com"]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: kube-gw, namespace: shop}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: kube-other, namespace: shop}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.other.com"}
`)
	check(t, run(objs),
		`Error [IST0101] (VirtualService shop/web gw.yaml#1) spec.gateways[2]: Referenced gateway not found: "missing"`,
		`Warning [IST0132] (VirtualService shop/web gw.yaml#1) spec.gateways[3]: one or more host [shop.example.com] defined in VirtualService shop/web not found in Gateway shop/other.`,
		`Warning [IST0132] (VirtualService shop/web gw.yaml#1) spec.gateways[5]: one or more host [shop.example.com] defined in VirtualService shop/web not found in Gateway shop/kube-other.`,
	)
}

func TestHostsOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"*", "a.com", true},
		{"a.com", "A.com", true},
		{"*.a.com", "b.a.com", true},
		{"b.a.com", "*.a.com", true},
		{"*.a.com", "*.b.a.com", true},
		{"*.a.com", "a.com", false},
		{"*.a.com", "*.b.com", false},
		{"a.com", "b.com", false},
	} {
		if got := hostsOverlap(c.a, c.b); got != c.want {
			t.Errorf("hostsOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

const conflictVS = "The VirtualServices bookinfo/reviews, bookinfo/reviews-canary associated with mesh gateway define the same host reviews.bookinfo.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."

func TestConflictingMeshGatewayHosts(t *testing.T) {
	objs := parse(t, "vs.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-canary, namespace: bookinfo}
spec:
  hosts: [ratings, reviews.bookinfo.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews}
---
# Bound to an ingress gateway only: not a mesh route.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-ingress, namespace: bookinfo}
spec:
  hosts: [reviews]
  gateways: [ingress]
  http:
  - route:
    - destination: {host: reviews}
`)
	check(t, run(objs),
		`Error [IST0101] (VirtualService bookinfo/reviews-ingress vs.yaml#3) spec.gateways[0]: Referenced gateway not found: "ingress"`,
		"Warning [IST0109] (VirtualService bookinfo/reviews vs.yaml#1) spec.hosts[0]: "+conflictVS,
		"Warning [IST0109] (VirtualService bookinfo/reviews-canary vs.yaml#2) spec.hosts[1]: "+conflictVS,
	)
}

// VirtualServices exported only to their own, different namespaces never
// meet in one sidecar.
func TestConflictingMeshGatewayHostsExportTo(t *testing.T) {
	objs := parse(t, "vs.yaml", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: a}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  http:
  - route:
    - destination: {host: api.example.com}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: b}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  http:
  - route:
    - destination: {host: api.example.com}
`)
	check(t, run(objs))
}

func TestRoutingConfigConflicts(t *testing.T) {
	objs := parse(t, "r.yaml", reviewsService+`
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: bookinfo}
spec:
  parentRefs:
  - {group: "", kind: Service, name: reviews}
  rules:
  - backendRefs:
    - {name: reviews, port: 9080}
`)
	const detail = "host reviews.bookinfo.svc.cluster.local has more than one routing config (HTTPRoute bookinfo/reviews, VirtualService bookinfo/reviews): each describes all of the host's traffic, so keep one of them"
	check(t, run(objs),
		"Warning [TRL0001] (VirtualService bookinfo/reviews r.yaml#2) spec.hosts[0]: "+detail,
		"Warning [TRL0001] (HTTPRoute bookinfo/reviews r.yaml#3) spec.parentRefs[0]: "+detail,
	)
}

func TestRoutingConfigTwoTrafficSplits(t *testing.T) {
	objs := parse(t, "ts.yaml", reviewsService+`
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: a, namespace: bookinfo}
spec:
  service: reviews
  backends:
  - {service: reviews, weight: 1}
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: b, namespace: bookinfo}
spec:
  service: reviews.bookinfo.svc.cluster.local
  backends:
  - {service: reviews, weight: 1}
`)
	const detail = "host reviews.bookinfo.svc.cluster.local has more than one routing config (TrafficSplit bookinfo/a, TrafficSplit bookinfo/b): each describes all of the host's traffic, so keep one of them"
	check(t, run(objs),
		"Warning [TRL0001] (TrafficSplit bookinfo/a ts.yaml#2) spec.service: "+detail,
		"Warning [TRL0001] (TrafficSplit bookinfo/b ts.yaml#3) spec.service: "+detail,
	)
}

// An HTTPRoute on an ingress Gateway and a mesh VirtualService route
// different traffic; one VirtualService and one HTTPRoute on different
// hosts do not meet.
func TestRoutingConfigNoConflict(t *testing.T) {
	objs := parse(t, "r.yaml", reviewsService+`
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: bookinfo}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: bookinfo}
spec:
  parentRefs:
  - name: web
  hostnames: [reviews.example.com]
  rules:
  - backendRefs:
    - {name: reviews, port: 9080}
`)
	check(t, run(objs))
}

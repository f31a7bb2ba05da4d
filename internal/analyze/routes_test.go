package analyze

import "testing"

func TestTrafficSplitServices(t *testing.T) {
	objs := parse(t, "ts.yaml", reviewsService+`
---
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: reviews, namespace: bookinfo}
spec:
  service: reviews.bookinfo.svc.cluster.local
  backends:
  - {service: reviews, weight: 90}
  - {service: reviews-v3, weight: 10}
---
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: ratings, namespace: bookinfo}
spec:
  service: ratings
  backends:
  - {service: reviews, weight: 1}
`)
	check(t, run(objs),
		`Error [IST0101] (TrafficSplit bookinfo/ratings ts.yaml#3) spec.service: Referenced service not found: "ratings"`,
		`Warning [TRL0006] (TrafficSplit bookinfo/reviews ts.yaml#2) spec.backends[1].service: backend service "reviews-v3" does not exist yet: its share of reviews.bookinfo.svc.cluster.local's traffic fails with 503 until a Service bookinfo/reviews-v3 does`,
	)
}

func TestGatewayRouteReferences(t *testing.T) {
	objs := parse(t, "routes.yaml", reviewsService+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: infra}
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
  - {name: web, namespace: infra}
  - {name: web}
  - {group: "", kind: Service, name: reviews}
  - {group: "", kind: Service, name: details}
  - {group: "", kind: Service, name: reviews, sectionName: http}
  - {group: "", kind: Service, name: reviews, sectionName: grpc}
  - {group: "", kind: Service, name: reviews, sectionName: http, port: 9090}
  - {group: "", kind: Service, name: reviews, port: 9090}
  rules:
  - backendRefs:
    - {name: reviews, port: 9080}
    - {name: reviews-v2, port: 9080}
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {name: shadow, namespace: test, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: reviews, namespace: bookinfo}
spec:
  parentRefs:
  - {group: "", kind: Service, name: reviews}
  rules:
  - backendRefs:
    - {name: reviews, port: 9080}
    - {name: reviews, namespace: other, port: 9080}
`)
	check(t, run(objs),
		`Error [IST0101] (HTTPRoute bookinfo/reviews routes.yaml#3) spec.parentRefs[1]: Referenced gateway not found: "web"`,
		`Error [IST0101] (HTTPRoute bookinfo/reviews routes.yaml#3) spec.parentRefs[3]: Referenced service not found: "details"`,
		`Error [IST0101] (HTTPRoute bookinfo/reviews routes.yaml#3) spec.parentRefs[5].sectionName: Referenced service port not found: service "reviews" has no port named "grpc", so the route attaches to nothing`,
		`Error [IST0101] (HTTPRoute bookinfo/reviews routes.yaml#3) spec.parentRefs[6].sectionName: Referenced service port not found: service "reviews" has no port named "http" numbered 9090, so the route attaches to nothing`,
		`Error [IST0101] (HTTPRoute bookinfo/reviews routes.yaml#3) spec.parentRefs[7].port: Referenced service port not found: service "reviews" has no port numbered 9090, so the route attaches to nothing`,
		`Error [IST0101] (HTTPRoute bookinfo/reviews routes.yaml#3) spec.rules[0].backendRefs[1]: Referenced service not found: "reviews-v2"`,
		`Error [IST0101] (HTTPRoute bookinfo/reviews routes.yaml#3) spec.rules[0].filters[0].requestMirror.backendRef: Referenced service not found: "test/shadow"`,
		`Error [IST0101] (GRPCRoute bookinfo/reviews routes.yaml#4) spec.rules[0].backendRefs[1]: Referenced service not found: "other/reviews"`,
	)
}

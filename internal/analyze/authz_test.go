package analyze

import "testing"

// Identity fields on workloads that accept plaintext, and HTTP fields on
// TCP ports, are reported; STRICT workloads and HTTP ports are not.
func TestAuthorizationEdgeCases(t *testing.T) {
	objs := parse(t, "a.yaml", paymentDeployment+`
---
apiVersion: v1
kind: Service
metadata: {name: payment, namespace: shop}
spec:
  selector: {app: payment}
  ports: [{name: http, port: 9080}, {name: tcp-db, port: 5432, targetPort: 15432}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-namespace, namespace: shop}
spec:
  selector: {matchLabels: {app: payment}}
  rules: [{from: [{source: {notNamespaces: [secure]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: paths, namespace: shop}
spec:
  selector: {matchLabels: {app: payment}}
  rules: [{to: [{operation: {paths: [/pay]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-post, namespace: shop}
spec:
  selector: {matchLabels: {app: payment}}
  action: DENY
  rules: [{to: [{operation: {methods: [POST]}}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vault, namespace: secure}
spec:
  selector: {matchLabels: {app: vault}}
  template:
    metadata: {labels: {app: vault}}
    spec: {containers: [{name: vault, image: vault}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: secure}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: vault, namespace: secure}
spec:
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/payment]}}]}]
`)
	check(t, run(objs),
		`Warning [TRL0010] (AuthorizationPolicy shop/by-namespace a.yaml#3) spec.rules[0].from[0].source.notNamespaces: this matches on the caller's mTLS identity, but workloads the policy applies to accept plaintext (shop/payment: PERMISSIVE), whose callers have no identity: an ALLOW on principals or namespaces refuses them, notPrincipals/notNamespaces admit them from any namespace, and a DENY on principals or namespaces does not stop them. Set a STRICT PeerAuthentication for these workloads`,
		`Warning [TRL0011] (AuthorizationPolicy shop/paths a.yaml#4) spec.rules[0].to[0].operation.paths: HTTP fields (hosts, methods, paths, request headers, request principals) cannot be checked on TCP ports payment.shop.svc.cluster.local:5432; as in Istio, the rule is dropped on them: it allows nothing there, and connections no other rule allows are refused`,
		`Warning [TRL0011] (AuthorizationPolicy shop/deny-post a.yaml#5) spec.rules[0].to[0].operation.methods: HTTP fields (hosts, methods, paths, request headers, request principals) cannot be checked on TCP ports payment.shop.svc.cluster.local:5432; as in Istio, the rule keeps only its TCP fields (source, ports, IPs) on them, so it matches every connection those fields match`,
	)
}

// A CUSTOM policy whose provider the sidecars cannot use is reported: it
// refuses what its rules match. A provider sending the body with a bound
// can be used.
func TestAuthorizationCustomProvider(t *testing.T) {
	objs := parse(t, "c.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - {name: http, envoyExtAuthzHttp: {service: authz.default.svc.cluster.local, port: 8000}}
    - {name: grpc, envoyExtAuthzGrpc: {service: authz.default.svc.cluster.local, port: 9000, includeRequestBodyInCheck: {allowPartialMessage: true}}}
    - {name: body, envoyExtAuthzHttp: {service: authz.default.svc.cluster.local, port: 8000, includeRequestBodyInCheck: {maxRequestBytes: 100}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ok}
spec: {action: CUSTOM, provider: {name: http}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: grpc}
spec: {action: CUSTOM, provider: {name: grpc}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: typo}
spec: {action: CUSTOM, provider: {name: htp}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: body}
spec: {action: CUSTOM, provider: {name: body}, rules: [{}]}
`)
	check(t, run(objs),
		`Warning [TRL0012] (AuthorizationPolicy default/grpc c.yaml#3) spec.provider.name: provider "grpc" sends the request body (includeRequestBodyInCheck) without maxRequestBytes, which Envoy refuses: the sidecars cannot ask it, so the requests this policy's rules match are refused`,
		`Warning [TRL0012] (AuthorizationPolicy default/typo c.yaml#4) spec.provider.name: provider "htp" is not in MeshConfig extensionProviders: the sidecars cannot ask it, so the requests this policy's rules match are refused`,
	)
}

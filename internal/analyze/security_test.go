package analyze

import "testing"

const paymentDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: payment, namespace: shop}
spec:
  selector:
    matchLabels: {app: payment}
  template:
    metadata:
      labels: {app: payment}
    spec:
      serviceAccountName: payment
      containers:
      - {name: payment, image: payment}
`

func TestPolicySelectors(t *testing.T) {
	objs := parse(t, "p.yaml", paymentDeployment+`
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ok, namespace: shop}
spec:
  selector:
    matchLabels: {app: payment}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: shop}
spec:
  selector:
    matchLabels: {app: paymnet}
---
# Attached by targetRef: the selector plays no part.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: targeted, namespace: shop}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: web}
---
# Namespace-wide: no selector to check.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: all, namespace: empty}
spec: {}
---
# In the root namespace a selector reaches every namespace.
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: payment, namespace: istio-system}
spec:
  selector:
    matchLabels: {app: payment}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: payment, namespace: other}
spec:
  selector:
    matchLabels: {app: payment}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  selector:
    matchLabels: {app: frontend}
  jwtRules:
  - issuer: https://issuer.example.com
`)
	check(t, run(objs),
		`Warning [IST0127] (AuthorizationPolicy shop/typo p.yaml#3) spec.selector.matchLabels: No matching workloads for this resource with the following labels: app=paymnet`,
		`Warning [IST0127] (PeerAuthentication other/payment p.yaml#7) spec.selector.matchLabels: No matching workloads for this resource with the following labels: app=payment`,
		`Warning [IST0127] (RequestAuthentication shop/jwt p.yaml#8) spec.selector.matchLabels: No matching workloads for this resource with the following labels: app=frontend`,
	)
}

func TestAuthorizationPolicySources(t *testing.T) {
	objs := parse(t, "p.yaml", paymentDeployment+`
---
apiVersion: v1
kind: Namespace
metadata: {name: frontend}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: frontend}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payment, namespace: shop}
spec:
  selector:
    matchLabels: {app: payment}
  rules:
  - from:
    - source:
        namespaces: [frontend, "front*", "*end", "*", backend]
        notNamespaces: [legacy]
    - source:
        principals:
        - cluster.local/ns/frontend/sa/web
        - cluster.local/ns/shop/sa/payment
        - cluster.local/ns/frontend/sa/default
        - cluster.local/ns/frontend/sa/*
        - "*"
        - example.org/ns/frontend/sa/mobile
        notPrincipals:
        - cluster.local/ns/shop/sa/admin
`)
	check(t, run(objs),
		`Error [IST0101] (AuthorizationPolicy shop/payment p.yaml#4) spec.rules[0].from[0].source.namespaces[4]: Referenced namespace not found: "backend"`,
		`Error [IST0101] (AuthorizationPolicy shop/payment p.yaml#4) spec.rules[0].from[0].source.notNamespaces[0]: Referenced namespace not found: "legacy"`,
		`Warning [TRL0002] (AuthorizationPolicy shop/payment p.yaml#4) spec.rules[0].from[1].source.notPrincipals[0]: principal "cluster.local/ns/shop/sa/admin" names service account shop/admin, which no ServiceAccount defines and no workload runs as: no caller can have this identity`,
		`Warning [TRL0002] (AuthorizationPolicy shop/payment p.yaml#4) spec.rules[0].from[1].source.principals[5]: principal "example.org/ns/frontend/sa/mobile" names service account frontend/mobile, which no ServiceAccount defines and no workload runs as: no caller can have this identity`,
		`Warning [TRL0010] (AuthorizationPolicy shop/payment p.yaml#4) spec.rules[0].from[0].source.namespaces: this matches on the caller's mTLS identity, but workloads the policy applies to accept plaintext (shop/payment: PERMISSIVE), whose callers have no identity: an ALLOW on principals or namespaces refuses them, notPrincipals/notNamespaces admit them from any namespace, and a DENY on principals or namespaces does not stop them. Set a STRICT PeerAuthentication for these workloads`,
	)
}

func TestPeerAuthenticationConflicts(t *testing.T) {
	objs := parse(t, "pa.yaml", `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: permissive, namespace: istio-system}
spec:
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec:
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: legacy, namespace: shop}
spec:
  mtls: {mode: DISABLE}
---
# One per namespace, and selector-bound ones, are fine.
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: web}
spec:
  mtls: {mode: STRICT}
`)
	const mesh = "The PeerAuthentications istio-system/default, istio-system/permissive have no workload selector and so are all mesh-wide: only one can apply and which one is undefined. Merge them into one."
	const shop = "The PeerAuthentications shop/default, shop/legacy have no workload selector and so are all namespace-wide for shop: only one can apply and which one is undefined. Merge them into one."
	check(t, run(objs),
		"Error [TRL0004] (PeerAuthentication istio-system/default pa.yaml#1) "+mesh,
		"Error [TRL0004] (PeerAuthentication istio-system/permissive pa.yaml#2) "+mesh,
		"Error [TRL0004] (PeerAuthentication shop/default pa.yaml#3) "+shop,
		"Error [TRL0004] (PeerAuthentication shop/legacy pa.yaml#4) "+shop,
	)
}

// MeshConfig's rootNamespace decides which policies are mesh-wide.
func TestRootNamespaceFromMeshConfig(t *testing.T) {
	objs := parse(t, "p.yaml", paymentDeployment+`
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    rootNamespace: mesh-root
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: payment, namespace: mesh-root}
spec:
  selector:
    matchLabels: {app: payment}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: mesh-root}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: b, namespace: mesh-root}
spec:
  mtls: {mode: PERMISSIVE}
`)
	const detail = "The PeerAuthentications mesh-root/a, mesh-root/b have no workload selector and so are all mesh-wide: only one can apply and which one is undefined. Merge them into one."
	check(t, run(objs),
		"Error [TRL0004] (PeerAuthentication mesh-root/a p.yaml#4) "+detail,
		"Error [TRL0004] (PeerAuthentication mesh-root/b p.yaml#5) "+detail,
	)
}

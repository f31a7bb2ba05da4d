package analyze

import "testing"

func TestSidecarSelectorMatchesNothing(t *testing.T) {
	objs := parse(t, "sc.yaml", reviewsV1+`
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: bookinfo}
spec:
  workloadSelector:
    labels: {app: reviews}
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: typo, namespace: bookinfo}
spec:
  workloadSelector:
    labels: {app: reveiws, version: v1}
  egress:
  - hosts: ["./*"]
---
# Sidecars select only in their own namespace.
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: other}
spec:
  workloadSelector:
    labels: {app: reviews}
  egress:
  - hosts: ["./*"]
`)
	check(t, run(objs),
		`Error [IST0101] (Sidecar bookinfo/typo sc.yaml#3) spec.workloadSelector.labels: Referenced selector not found: "app=reveiws,version=v1"`,
		`Error [IST0101] (Sidecar other/reviews sc.yaml#4) spec.workloadSelector.labels: Referenced selector not found: "app=reviews"`,
	)
}

func TestSidecarConflicts(t *testing.T) {
	objs := parse(t, "sc.yaml", reviewsV1+`
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a, namespace: bookinfo}
spec:
  workloadSelector:
    labels: {app: reviews}
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b, namespace: bookinfo}
spec:
  workloadSelector:
    labels: {version: v1}
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: bookinfo}
spec:
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default2, namespace: bookinfo}
spec:
  egress:
  - hosts: ["istio-system/*"]
---
# One selectorless Sidecar per namespace is the normal case.
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: other}
spec:
  egress:
  - hosts: ["./*"]
`)
	const sel = `The Sidecars bookinfo/a, bookinfo/b in namespace "bookinfo" select the same workload Deployment bookinfo/reviews-v1, which can lead to undefined behavior.`
	const none = `The Sidecars bookinfo/default, bookinfo/default2 in namespace "bookinfo" have no workload selector, which can lead to undefined behavior.`
	check(t, run(objs),
		"Error [IST0110] (Sidecar bookinfo/a sc.yaml#2) spec.workloadSelector.labels: "+sel,
		"Error [IST0110] (Sidecar bookinfo/b sc.yaml#3) spec.workloadSelector.labels: "+sel,
		"Error [IST0111] (Sidecar bookinfo/default sc.yaml#4) "+none,
		"Error [IST0111] (Sidecar bookinfo/default2 sc.yaml#5) "+none,
	)
}

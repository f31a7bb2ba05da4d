package analyze

import "testing"

const reviewsV1 = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels: {app: reviews, version: v1}
    spec:
      containers:
      - {name: reviews, image: reviews}
`

func TestSubsetSelectsNoWorkload(t *testing.T) {
	objs := parse(t, "a.yaml", reviewsService+"---"+reviewsV1+`
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v2
  namespace: bookinfo
  labels: {app: reviews, version: v2}
spec:
  containers:
  - {name: reviews, image: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-vm, namespace: bookinfo}
spec:
  address: 10.0.0.5
  labels: {app: reviews, version: vm}
---
# Right labels, wrong namespace: not an endpoint of bookinfo/reviews.
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v3, namespace: other}
spec:
  address: 10.0.0.6
  labels: {app: reviews, version: v3}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: vm, labels: {version: vm}}
  - {name: v3, labels: {version: v3}}
`)
	check(t, run(objs),
		`Warning [IST0173] (DestinationRule bookinfo/reviews a.yaml#6) spec.subsets[3].labels: The Subset v3 defined in the DestinationRule does not select any workload of reviews.bookinfo.svc.cluster.local, which may lead to 503 UH (NoHealthyUpstream).`,
	)
}

// ServiceEntry hosts count as services; their inline endpoints are what
// subsets select. An external ServiceEntry without endpoints or selector
// has no workloads to judge subsets by.
func TestDestinationRuleServiceEntryHosts(t *testing.T) {
	objs := parse(t, "se.yaml", `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 5432, name: tcp, protocol: TCP}
  endpoints:
  - {address: 10.0.0.1, labels: {role: primary}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 443, name: tls, protocol: TLS}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db.internal
  subsets:
  - {name: primary, labels: {role: primary}}
  - {name: replica, labels: {role: replica}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.com
  subsets:
  - {name: any, labels: {tier: any}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wildcard}
spec:
  host: "*.example.org"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: unknown}
spec:
  host: ratings
`)
	check(t, run(objs),
		`Warning [IST0173] (DestinationRule default/db se.yaml#3) spec.subsets[1].labels: The Subset replica defined in the DestinationRule does not select any workload of db.internal, which may lead to 503 UH (NoHealthyUpstream).`,
		`Warning [IST0174] (DestinationRule default/unknown se.yaml#6) spec.host: The host ratings defined in the DestinationRule does not match any services in the mesh.`,
	)
}

func TestConflictingSubsets(t *testing.T) {
	objs := parse(t, "dr.yaml", reviewsService+"---"+reviewsV1+`
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-more, namespace: bookinfo}
spec:
  host: reviews.bookinfo.svc.cluster.local
  subsets:
  - {name: stable, labels: {version: v1}}
  - {name: v1, labels: {app: reviews}}
---
# A rule for other clients (workloadSelector) is not merged with these.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-for-web, namespace: bookinfo}
spec:
  host: reviews
  workloadSelector:
    matchLabels: {app: web}
  subsets:
  - {name: v1, labels: {version: v1}}
`)
	const detail = `subset "v1" of host reviews.bookinfo.svc.cluster.local is defined by several DestinationRules (bookinfo/reviews, bookinfo/reviews-more): only one definition is used; define each subset once`
	check(t, run(objs),
		"Warning [TRL0003] (DestinationRule bookinfo/reviews dr.yaml#3) spec.subsets[0].name: "+detail,
		"Warning [TRL0003] (DestinationRule bookinfo/reviews-more dr.yaml#4) spec.subsets[1].name: "+detail,
	)
}

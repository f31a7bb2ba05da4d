package analyze

import (
	"fmt"
	"testing"
)

// A DestinationRule setting validation accepts but the sidecar would
// refuse is an Error at the section that holds it; the same rule with a
// connect timeout the sidecar takes says nothing.
func TestPolicyNotServedFinding(t *testing.T) {
	const svc = `
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: grpc, port: 7070}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: shop}
spec:
  host: ratings
  trafficPolicy:
    portLevelSettings:
    - port: {number: 9080}
      connectionPool: {tcp: {connectTimeout: %s}}
`
	bad := parse(t, "dr.yaml", fmt.Sprintf(svc, "9223372036s"))
	check(t, run(bad),
		`Error [TRL0009] (DestinationRule shop/ratings dr.yaml#2) spec.trafficPolicy.portLevelSettings[0].connectionPool: the proxy would refuse the clusters of ratings.shop.svc.cluster.local:9080 with this setting (connect_timeout: 9223372036s is too long); they are served without the DestinationRule's policy: correct the setting`)
	check(t, run(parse(t, "dr.yaml", fmt.Sprintf(svc, "87600h"))))
}

// Two spellings of one server name in tls routes are one name (the first
// route takes it), not filter chains the sidecar would refuse: no TRL0008.
// (Refused chains are found by the translator's guard; its tests inject
// them, since no valid config produces them.)
func TestSNISpellingsNotRefused(t *testing.T) {
	objs := parse(t, "db.yaml", `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-db, namespace: shop}
spec:
  hosts: [db.example.com]
  ports: [{number: 8443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext-db, namespace: shop}
spec:
  hosts: [db.example.com, db.example.com.]
  tls:
  - match: [{sniHosts: [db.example.com]}]
    route: [{destination: {host: db.example.com}}]
  - match: [{sniHosts: [db.example.com.]}]
    route: [{destination: {host: db.example.com}}]
`)
	check(t, run(objs))
}

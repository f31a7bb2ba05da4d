package sidecar_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// The control plane puts every cluster and listener through the sidecar's
// own decoder before sending it (internal/translate/guard.go): these are
// real configs that validation accepts and the sidecar refuses, which used
// to get the whole CDS or LDS update NACKed, so a freshly started sidecar
// never became ready and no later change reached it.

// guardServices are two HTTP services with a backend each (reviews at
// base.2, ratings at base.3); client sidecars run at base.1.
func guardServices(base string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews}
spec: {address: %[1]s.2, labels: {app: reviews}}
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings}
spec: {address: %[1]s.3, labels: {app: ratings, version: v1}}
`, base)
}

// guardAnswers checks that a request to url through p is answered 200 by the
// backend named want, within a few seconds.
func guardAnswers(t *testing.T, p *pod, url, want string) {
	t.Helper()
	c := p.client()
	eventually(t, 10*time.Second, func() string {
		resp, err := c.Get(url)
		if err != nil {
			return fmt.Sprintf("GET %s: %v", url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != want {
			return fmt.Sprintf("GET %s: %d from %q (%s), want 200 from %s", url, resp.StatusCode, resp.Header.Get("X-Backend"), b, want)
		}
		return ""
	})
}

// A DestinationRule whose connect timeout the sidecar cannot hold (longer
// than time.Duration's range, yet a whole number of milliseconds, which is
// all validation asks) is left out of its service's clusters: a new
// sidecar becomes ready, the service keeps answering without the rule's
// policy, the other services answer, and a service added later reaches the
// running sidecar.
func TestGuardRefusedDestinationRule(t *testing.T) {
	leak.Check(t)
	const base = "127.112.1"
	m := newMesh(t, guardServices(base)+`---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {connectTimeout: 9223372036s}}
  subsets:
  - {name: v1, labels: {version: v1}}
`)
	backend(t, base+".2:9080", "reviews", nil)
	backend(t, base+".3:9080", "ratings", nil)
	backend(t, base+".4:9080", "details", nil)
	sleep := m.sidecar("sleep", base+".1", map[string]string{"app": "sleep"})

	guardAnswers(t, sleep, "http://reviews:9080/", "reviews")
	guardAnswers(t, sleep, "http://ratings:9080/", "ratings")

	m.write("details.yaml", fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: details}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: details}
spec: {address: %s.4, labels: {app: details}}
`, base))
	guardAnswers(t, sleep, "http://details:9080/", "details")
	if n := m.cp.XDS.NACKs(); n != 0 {
		t.Errorf("the control plane saw %d NACKs, want none", n)
	}
}

// A VirtualService whose tls chains the sidecar refuses (two spellings of
// one server name, "db.example.com" and "db.example.com.", which
// validation keeps apart and the sidecar, like Envoy's SNI matching, does
// not) loses them: a new sidecar becomes ready, connections to the TLS
// service reach it through its default chain, and HTTP services answer.
func TestGuardRefusedTLSChains(t *testing.T) {
	leak.Check(t)
	const base = "127.112.2"
	m := newMesh(t, guardServices(base)+fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-db}
spec:
  hosts: [db.example.com]
  ports: [{number: 8443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: %s.5}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext-db}
spec:
  hosts: [db.example.com, db.example.com.]
  tls:
  - match: [{sniHosts: [db.example.com]}, {sniHosts: [db.example.com.]}]
    route: [{destination: {host: db.example.com}}]
`, base))
	backend(t, base+".2:9080", "reviews", nil)
	nameServer(t, base+".5:8443", "db")
	sleep := m.sidecar("sleep", base+".1", map[string]string{"app": "sleep"})

	guardAnswers(t, sleep, "http://reviews:9080/", "reviews")
	c, br := sleep.connectVia(t, "db.example.com:8443", "")
	b, err := io.ReadAll(br)
	c.Close()
	if err != nil || string(b) != "db" {
		t.Errorf("db.example.com:8443 answered %q, %v; want db (the service's default chain)", b, err)
	}
	if n := m.cp.XDS.NACKs(); n != 0 {
		t.Errorf("the control plane saw %d NACKs, want none", n)
	}
}

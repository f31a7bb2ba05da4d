package sidecar_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
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
func guardAnswers(t *testing.T, p *meshtest.Pod, url, want string) {
	t.Helper()
	c := p.Client()
	meshtest.Eventually(t, 10*time.Second, func() string {
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
	m := meshtest.New(t, guardServices(base)+`---
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
	meshtest.Backend(t, base+".2:9080", "reviews", nil)
	meshtest.Backend(t, base+".3:9080", "ratings", nil)
	meshtest.Backend(t, base+".4:9080", "details", nil)
	sleep := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})

	guardAnswers(t, sleep, "http://reviews:9080/", "reviews")
	guardAnswers(t, sleep, "http://ratings:9080/", "ratings")

	m.Write("details.yaml", fmt.Sprintf(`apiVersion: v1
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
	if n := m.ControlPlane().XDS.NACKs(); n != 0 {
		t.Errorf("the control plane saw %d NACKs, want none", n)
	}
}

// A VirtualService spelling one server name two ways ("db.example.com" and
// "db.example.com.") routes by it: the translator gives the spellings one
// chain. (Two chains for one name are a listener the sidecar refuses; before,
// that NACKed every listener of the proxy, and then the guard dropped the
// tls routes.) Set up: db and db-v2 behind TLS, the route to db-v2, a
// sidecar; sent: a CONNECT and a ClientHello for db.example.com; back:
// db-v2's answer, and no NACK.
func TestTLSServerNameSpellings(t *testing.T) {
	leak.Check(t)
	const base = "127.112.2"
	m := meshtest.New(t, guardServices(base)+fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-db}
spec:
  hosts: [db.example.com]
  ports: [{number: 8443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: %[1]s.5}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-db-v2}
spec:
  hosts: [db-v2.example.com]
  ports: [{number: 8443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: %[1]s.6}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext-db}
spec:
  hosts: [db.example.com, db.example.com.]
  tls:
  - match: [{sniHosts: [db.example.com]}, {sniHosts: [db.example.com.]}]
    route: [{destination: {host: db-v2.example.com}}]
`, base))
	meshtest.Backend(t, base+".2:9080", "reviews", nil)
	cert := selfSigned(t)
	tlsNameServer(t, base+".5:8443", "db", cert)
	tlsNameServer(t, base+".6:8443", "db-v2", cert)
	sleep := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})

	guardAnswers(t, sleep, "http://reviews:9080/", "reviews")
	c, br := connectVia(t, sleep, "db.example.com:8443", "")
	defer c.Close()
	tc := tls.Client(&bufferedConn{Conn: c, r: br}, &tls.Config{ServerName: "db.example.com", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS through the tls route: %v", err)
	}
	b, err := io.ReadAll(tc)
	if err != nil || string(b) != "db-v2 db.example.com" {
		t.Errorf("db.example.com:8443 answered %q, %v; want db-v2 db.example.com (the tls route's destination)", b, err)
	}
	if n := m.ControlPlane().XDS.NACKs(); n != 0 {
		t.Errorf("the control plane saw %d NACKs, want none", n)
	}
}

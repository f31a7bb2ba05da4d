package sidecar_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// tcpRouteConfig is a TCP service db with two versions (base.2 and base.3)
// and a TLS service secure with two (base.5 and base.6), none behind a
// sidecar, and VirtualServices routing them: db by the caller's labels,
// then split 75/25; secure by the server name the client's ClientHello
// asks for.
func tcpRouteConfig(base string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp-db, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-a}
spec: {address: %[1]s.2, labels: {app: db, version: a}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-b}
spec: {address: %[1]s.3, labels: {app: db, version: b}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db
  subsets: [{name: a, labels: {version: a}}, {name: b, labels: {version: b}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{sourceLabels: {app: special}}]
    route: [{destination: {host: db, subset: b}}]
  - route:
    - {destination: {host: db, subset: a}, weight: 75}
    - {destination: {host: db, subset: b}, weight: 25}
---
apiVersion: v1
kind: Service
metadata: {name: secure}
spec:
  selector: {app: secure}
  ports: [{name: tls, port: 8443}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: secure-1}
spec: {address: %[1]s.5, labels: {app: secure, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: secure-2}
spec: {address: %[1]s.6, labels: {app: secure, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: secure}
spec:
  host: secure
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure, "*.secure.example"]
  tls:
  - match: [{sniHosts: [one.secure.example]}]
    route: [{destination: {host: secure, subset: v1}}]
  - match: [{sniHosts: ["*.secure.example"]}]
    route: [{destination: {host: secure, subset: v2}}]
`, base)
}

// nameServer answers every TCP connection with its name and closes it.
func nameServer(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, name)
			c.Close()
		}
	})
}

// tlsNameServer terminates TLS with a self-signed certificate and answers
// with its name and the server name the client asked for.
func tlsNameServer(t *testing.T, addr, name string, cert tls.Certificate) {
	t.Helper()
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				io.WriteString(tc, name+" "+tc.ConnectionState().ServerName)
			})
		}
	})
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"*.secure.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tcpRouteMesh starts the backends, a plain client (base.1, app: sleep)
// and a client labelled app: special (base.4), and waits until db routes.
func tcpRouteMesh(t *testing.T, base string) (sleep, special *meshtest.Pod) {
	m := meshtest.New(t, tcpRouteConfig(base))
	nameServer(t, base+".2:9000", "a")
	nameServer(t, base+".3:9000", "b")
	cert := selfSigned(t)
	tlsNameServer(t, base+".5:8443", "v1", cert)
	tlsNameServer(t, base+".6:8443", "v2", cert)
	sleep = m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})
	special = m.Sidecar("special", base+".4", map[string]string{"app": "special"})
	return sleep, special
}

// dbAnswer opens a CONNECT tunnel to db:9000 and returns what answered.
func dbAnswer(t *testing.T, p *meshtest.Pod) string {
	t.Helper()
	c, br := connectVia(t, p, "db:9000", "")
	defer c.Close()
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading db's answer: %v", err)
	}
	return string(b)
}

// A weighted tcp route splits connections by its weights, and a route
// matching the caller's labels takes that caller's connections only.
func TestTCPRouteWeightsAndSourceLabels(t *testing.T) {
	leak.Check(t)
	sleep, special := tcpRouteMesh(t, "127.93.1")

	for range 50 {
		if got := dbAnswer(t, special); got != "b" {
			t.Fatalf("the app: special caller reached %q, want b (its sourceLabels route)", got)
		}
	}

	// 75% of 400 is 300; the binomial's standard deviation is 8.7, so
	// ±45 (over 5 of them) fails by chance less than once in a million
	// runs, while an even split (200) or the special route (0) fails.
	const n = 400
	counts := map[string]int{}
	for range n {
		counts[dbAnswer(t, sleep)]++
	}
	if counts["a"]+counts["b"] != n {
		t.Fatalf("answers %v, want only a and b", counts)
	}
	if counts["a"] < 255 || counts["a"] > 345 {
		t.Errorf("a answered %d of %d connections (%v), want 300 ± 45 (weight 75 of 100)", counts["a"], n, counts)
	}
}

// tlsAnswer opens a CONNECT tunnel to secure:8443, shakes hands with sni
// inside it, and returns what answered, or the error.
func tlsAnswer(t *testing.T, p *meshtest.Pod, sni string) (string, error) {
	t.Helper()
	c, br := connectVia(t, p, "secure:8443", "")
	defer c.Close()
	tc := tls.Client(&bufferedConn{Conn: c, r: br}, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(tc)
	return string(b), err
}

// bufferedConn reads through r, which may hold bytes already read from
// Conn.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// A tls route picks the backend by the server name inside the CONNECT
// tunnel: the exact name before the wildcard, and a name no route names
// gets no backend at all, as in Istio.
func TestTLSRouteBySNI(t *testing.T) {
	leak.Check(t)
	sleep, _ := tcpRouteMesh(t, "127.93.2")
	for _, tc := range []struct{ sni, want string }{
		{"one.secure.example", "v1 one.secure.example"},
		{"two.secure.example", "v2 two.secure.example"},
		{"a.b.secure.example", "v2 a.b.secure.example"},
	} {
		for range 10 {
			got, err := tlsAnswer(t, sleep, tc.sni)
			if err != nil || got != tc.want {
				t.Fatalf("server name %s: answer %q, %v; want %q", tc.sni, got, err, tc.want)
			}
		}
	}
	for _, sni := range []string{"other.example", ""} {
		if got, err := tlsAnswer(t, sleep, sni); err == nil {
			t.Errorf("server name %q: answered %q; want the connection closed (no tls route names it)", sni, got)
		}
	}
	if got := statsLine(t, sleep, "tcp.downstream_cx_no_route"); got == "" || got == "0" {
		t.Errorf("tcp.downstream_cx_no_route = %q, want the unrouted connections counted", got)
	}
}

// Plain TCP bytes to a TLS port whose routes choose by server name have
// none, and so no route; they are not held up beyond the client's first
// bytes.
func TestTLSRouteNotTLS(t *testing.T) {
	leak.Check(t)
	sleep, _ := tcpRouteMesh(t, "127.93.3")
	c, br := connectVia(t, sleep, "secure:8443", "hello\n")
	defer c.Close()
	start := time.Now()
	b, _ := io.ReadAll(br)
	if len(b) != 0 {
		t.Errorf("plain bytes got answer %q, want the connection closed", b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closing took %v: the sidecar waited for a ClientHello after bytes that cannot start one", d)
	}
	if got := statsLine(t, sleep, "tcp.downstream_cx_no_route"); got != "1" {
		t.Errorf("tcp.downstream_cx_no_route = %q, want 1", got)
	}
}

// vipRouteConfig gives db and secure virtual IPs (10.96.93.20 and .30) and
// routes db by destination subnet: connections to addresses in
// 10.96.93.0/24 go to b, any other to a.
func vipRouteConfig(base string) string {
	cfg := tcpRouteConfig(base)
	cfg = strings.Replace(cfg, "  selector: {app: db}\n", "  clusterIP: 10.96.93.20\n  selector: {app: db}\n", 1)
	cfg = strings.Replace(cfg, "  selector: {app: secure}\n", "  clusterIP: 10.96.93.30\n  selector: {app: secure}\n", 1)
	return strings.Replace(cfg, `  tcp:
  - match: [{sourceLabels: {app: special}}]`, `  tcp:
  - match: [{destinationSubnets: [10.96.93.0/24]}]`, 1)
}

// capturedAnswer hands the sidecar a captured connection to dst, as
// transparent mode's outbound port receives it, speaking TLS with sni when
// it is not empty, and returns what answered.
func capturedAnswer(t *testing.T, p *meshtest.Pod, dst, sni string) (string, error) {
	t.Helper()
	app, captured := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer captured.Close()
		p.Proxy.ServeCaptured(captured, netip.MustParseAddrPort(dst))
	}()
	defer func() { app.Close(); <-done }()
	app.SetDeadline(time.Now().Add(10 * time.Second))
	var c net.Conn = app
	if sni != "" {
		tc := tls.Client(app, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		c = tc
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// Captured connections (transparent mode) take the same chains: by the
// destination address they were sent to (destinationSubnets against the
// VIP) and by the server name of their ClientHello. A CONNECT by name
// matches subnets against the service's VIP.
func TestTCPRouteCaptured(t *testing.T) {
	leak.Check(t)
	base := "127.93.4"
	m := meshtest.New(t, vipRouteConfig(base))
	nameServer(t, base+".2:9000", "a")
	nameServer(t, base+".3:9000", "b")
	cert := selfSigned(t)
	tlsNameServer(t, base+".5:8443", "v1", cert)
	tlsNameServer(t, base+".6:8443", "v2", cert)
	sleep := m.Sidecar("sleep", base+".1", map[string]string{"app": "sleep"})

	for range 20 {
		if got, err := capturedAnswer(t, sleep, "10.96.93.20:9000", ""); got != "b" {
			t.Fatalf("captured connection to db's VIP: answer %q, %v; want b (its destinationSubnets route)", got, err)
		}
		if got := dbAnswer(t, sleep); got != "b" {
			t.Fatalf("CONNECT db:9000: answer %q; want b (the VIP is in the route's subnet)", got)
		}
	}
	for _, tc := range []struct{ sni, want string }{
		{"one.secure.example", "v1 one.secure.example"},
		{"two.secure.example", "v2 two.secure.example"},
	} {
		for range 10 {
			got, err := capturedAnswer(t, sleep, "10.96.93.30:8443", tc.sni)
			if err != nil || got != tc.want {
				t.Fatalf("captured TLS with server name %s: answer %q, %v; want %q", tc.sni, got, err, tc.want)
			}
		}
	}
	if got, err := capturedAnswer(t, sleep, "10.96.93.30:8443", "other.example"); err == nil {
		t.Errorf("captured TLS for a server name no route names: answered %q; want the connection closed", got)
	}
}

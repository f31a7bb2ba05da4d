package sidecar_test

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/tunnel"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// sniPolicy is an AuthorizationPolicy for app whose one rule is a
// connection.sni condition (values, or notValues with not).
func sniPolicy(app, action string, not bool, sni string) string {
	field := "values"
	if not {
		field = "notValues"
	}
	return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: sni}\nspec:\n  selector: {matchLabels: {app: " + app + "}}\n  action: " + action +
		"\n  rules: [{when: [{key: connection.sni, " + field + ": [\"" + sni + "\"]}]}]\n"
}

// The server name a sidecar asks for on the mesh tunnel is Istio's
// (outbound_.PORT_.SUBSET_.HOST), and the server side's connection.sni
// conditions judge it: an ALLOW naming it admits checkout, one naming
// another server name refuses it (403, the app never sees it), and a
// caller dialling the tunnel with a server name of its own is judged by
// that one.
func TestAuthzConnectionSNI(t *testing.T) {
	leak.Check(t)
	const base = "127.93.11"
	const meshSNI = "outbound_.9080_._.payment-service.default.svc.cluster.local"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentServiceConfig(base, ""), meshtest.WithFile("p.yaml", sniPolicy("payment-service", "ALLOW", false, meshSNI)))
	seen := countingBackend(m, base+".2:9080")
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment-service"}, authzIdentity(t, ca, "payment-service"))
	checkout := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	m.WaitSynced()
	c := checkout.Client()
	defer c.CloseIdleConnections()
	if code, flags, body, _ := get(c, "http://payment-service:9080/pay", nil); code != http.StatusOK || body != "payment" {
		t.Fatalf("checkout under an ALLOW on its mesh SNI: %d %s %q, want payment's 200", code, flags, body)
	}

	// A caller with its own server name, through the tunnel port.
	src := certs.NewStatic(ca.Leaf(t, certtest.SPIFFE("default", "checkout-service"), certtest.LeafOptions{}), ca.Pool())
	d := &tunnel.Dialer{Source: netip.MustParseAddr(base + ".1")}
	defer d.Close()
	dial := func(sni string) string {
		cfg := certs.ClientConfig(src, func(string) bool { return true })
		cfg.ServerName = sni
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := d.DialHTTP1TLS(ctx, netip.MustParseAddrPort(base+".2:15008"), base+".2:9080", nil, cfg)
		if err != nil {
			return "dial: " + err.Error()
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET /pay HTTP/1.1\r\nHost: payment-service:9080\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(conn)
		return firstLine(string(b))
	}
	if got := dial("evil.example"); got != "HTTP/1.1 403 Forbidden" {
		t.Errorf("tunnel with server name evil.example under the ALLOW on the mesh SNI: %q, want 403", got)
	}
	if got := dial(meshSNI); got != "HTTP/1.1 200 OK" {
		t.Errorf("tunnel with the mesh SNI: %q, want 200", got)
	}

	// An ALLOW naming another server name refuses checkout.
	m.Write("p.yaml", sniPolicy("payment-service", "ALLOW", false, "payment.example"))
	awaitStatus(t, c, "http://payment-service:9080/pay", http.StatusForbidden)
	before := seen.Load()
	if code, _, body, _ := get(c, "http://payment-service:9080/pay", nil); code != http.StatusForbidden || body != "RBAC: access denied" {
		t.Errorf("checkout under an ALLOW on payment.example: %d %q, want 403 RBAC: access denied", code, body)
	}
	if n := seen.Load(); n != before {
		t.Errorf("payment's app saw %d refused requests", n-before)
	}
	if got := dial("payment.example"); got != "HTTP/1.1 200 OK" {
		t.Errorf("tunnel with server name payment.example: %q, want 200", got)
	}

	// DENY with notValues: everything but the named server name is refused.
	m.Write("p.yaml", sniPolicy("payment-service", "DENY", true, meshSNI))
	awaitStatus(t, c, "http://payment-service:9080/pay", http.StatusOK)
	if got := dial("payment.example"); got != "HTTP/1.1 403 Forbidden" {
		t.Errorf("tunnel with server name payment.example under DENY notValues [mesh SNI]: %q, want 403", got)
	}
}

// On a TCP port the connection's server name is judged at accept: an
// ALLOW on the mesh SNI proxies checkout's bytes, one on another server
// name closes the connection before the app sees it.
func TestAuthzConnectionSNITCP(t *testing.T) {
	leak.Check(t)
	const base = "127.93.12"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentServiceConfig(base, ""), meshtest.WithFile("p.yaml", sniPolicy("db", "ALLOW", false, "outbound_.9000_._.db.default.svc.cluster.local")))
	conns := echoApp(t, base+".5:9000")
	m.Sidecar("db", base+".5", map[string]string{"app": "db"}, authzIdentity(t, ca, "db"))
	checkout := m.Sidecar("checkout", base+".1", nil, authzIdentity(t, ca, "checkout-service"))
	m.WaitSynced()
	if got := tcpEcho(t, checkout, "db:9000"); got != "hello\n" {
		t.Fatalf("checkout under an ALLOW on its mesh SNI: got %q, want the echo", got)
	}
	m.Write("p.yaml", sniPolicy("db", "ALLOW", false, "db.example"))
	meshtest.Eventually(t, 10*time.Second, func() string {
		if got := tcpEcho(t, checkout, "db:9000"); got == "hello\n" {
			return "checkout's connection still proxied under an ALLOW on db.example"
		}
		return ""
	})
	before := conns.Load()
	if got := tcpEcho(t, checkout, "db:9000"); got == "hello\n" {
		t.Errorf("checkout's connection was proxied (%q), want it closed", got)
	}
	if n := conns.Load(); n != before {
		t.Errorf("db's app accepted %d refused connections", n-before)
	}
}

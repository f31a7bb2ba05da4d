package sidecar_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// capture stands in for transparent mode's inbound capture: connections
// to the returned address are served by p's inbound port handler as if
// they had been redirected there on their way to dst.
func capture(t *testing.T, p *meshtest.Pod, at string, dst netip.AddrPort) string {
	t.Helper()
	ln, err := net.Listen("tcp", at)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.Proxy.ServeCapturedInbound(c, dst) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// plainGET sends one HTTP/1.1 GET on a new plaintext connection to addr
// and returns the status line, or what went wrong.
func plainGET(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	return roundTrip(c)
}

// mtlsGET is plainGET inside mesh mTLS (Istio's ALPN) with id.
func mtlsGET(addr string, id certs.Source) string {
	cfg := certs.ClientConfig(id, nil)
	cfg.NextProtos = []string{"istio-peer-exchange", "istio"}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "handshake: " + err.Error()
	}
	return roundTrip(c)
}

func roundTrip(c net.Conn) string {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: payment:9080\r\nConnection: close\r\n\r\n"); err != nil {
		return "write: " + err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "read: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s xfcc=%s", resp.StatusCode, b, resp.Header.Get("X-Seen-Xfcc"))
}

// rewrite replaces mesh.yaml and waits until every sidecar has ACKed the
// store's version with it.
func rewrite(t *testing.T, m *meshtest.Mesh, content string) {
	t.Helper()
	before := m.ControlPlane().Store.Snapshot().Version
	m.Write("mesh.yaml", content)
	meshtest.Eventually(t, 10*time.Second, func() string {
		if m.ControlPlane().Store.Snapshot().Version == before {
			return "the control plane has not read the edit"
		}
		return ""
	})
	m.WaitSynced()
}

func peerAuthn(ns, name, spec string) string {
	return fmt.Sprintf(`---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: %s, namespace: %s}
spec: %s
`, name, ns, spec)
}

// PeerAuthentication on the captured inbound port (transparent mode's
// 15006), through a real sidecar and app: mesh-wide STRICT refuses a
// plaintext client (closed, counted) and admits mTLS with the mesh's
// ALPN, terminated with the sidecar's identity (the app learns the
// caller's SPIFFE ID); PERMISSIVE admits both; DISABLE terminates nothing
// (an mTLS client reaches the app as raw TLS bytes, which the HTTP app
// cannot read). A meshed caller through the tunnel gets through in every
// mode.
func TestPeerAuthenticationOnCapturedInbound(t *testing.T) {
	leak.Check(t)
	const base = "127.77.150"
	ca := certtest.NewCA(t)
	sleep := certs.NewStatic(ca.Leaf(t, certtest.SPIFFE("default", "sleep"), certtest.LeafOptions{}), ca.Pool())
	other := certtest.NewCA(t)
	m := meshtest.New(t, paymentConfig(base, peerAuthn("istio-system", "default", "{mtls: {mode: STRICT}}")))
	m.Backend(base+".2:9080", "payment", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Xfcc", r.Header.Get("X-Forwarded-Client-Cert"))
		io.WriteString(w, "payment")
	})
	server := m.Sidecar("payment", base+".2", map[string]string{"app": "payment"}, withIdentity(t, ca, certtest.SPIFFE("default", "payment"), certtest.LeafOptions{}))
	client := m.Sidecar("sleep", base+".1", nil, func(o *sidecar.Options) { o.Identity = sleep })
	m.WaitSynced()
	in := capture(t, server, base+".2:15006", netip.MustParseAddrPort(base+".2:9080"))
	c := client.Client()
	defer c.CloseIdleConnections()
	meshed := func(mode string) {
		t.Helper()
		if code, flags, body, _ := get(c, "http://payment:9080/", nil); code != 200 || body != "payment" {
			t.Errorf("%s: a meshed caller through the tunnel got %d %s %q", mode, code, flags, body)
		}
	}

	// STRICT
	if got := plainGET(in); strings.HasPrefix(got, "200") {
		t.Errorf("STRICT: a plaintext client got %q, want the connection closed", got)
	}
	if n := statInt(t, server, "listener.virtualInbound.no_filter_chain_match"); n != 1 {
		t.Errorf("STRICT: refused connections counted %d, want 1", n)
	}
	if got := mtlsGET(in, sleep); !strings.HasPrefix(got, "200 payment") || !strings.Contains(got, "URI="+certtest.SPIFFE("default", "sleep")) {
		t.Errorf("STRICT: an mTLS client got %q, want payment's 200 with its identity in XFCC", got)
	}
	if got := mtlsGET(in, certs.NewStatic(other.Leaf(t, certtest.SPIFFE("default", "sleep"), certtest.LeafOptions{}), ca.Pool())); strings.HasPrefix(got, "200") {
		t.Errorf("STRICT: a client with a certificate from another CA got %q", got)
	}
	meshed("STRICT")

	// PERMISSIVE
	rewrite(t, m, paymentConfig(base, peerAuthn("istio-system", "default", "{mtls: {mode: PERMISSIVE}}")))
	if got := plainGET(in); !strings.HasPrefix(got, "200 payment xfcc=") || strings.Contains(got, "URI=") {
		t.Errorf("PERMISSIVE: a plaintext client got %q, want payment's 200 without an identity", got)
	}
	if got := mtlsGET(in, sleep); !strings.HasPrefix(got, "200 payment") || !strings.Contains(got, "URI="+certtest.SPIFFE("default", "sleep")) {
		t.Errorf("PERMISSIVE: an mTLS client got %q", got)
	}
	meshed("PERMISSIVE")

	// DISABLE
	rewrite(t, m, paymentConfig(base, peerAuthn("istio-system", "default", "{mtls: {mode: DISABLE}}")))
	if got := plainGET(in); !strings.HasPrefix(got, "200 payment") {
		t.Errorf("DISABLE: a plaintext client got %q", got)
	}
	if got := mtlsGET(in, sleep); strings.HasPrefix(got, "200") {
		t.Errorf("DISABLE: an mTLS client got %q, want its TLS passed to the app untouched", got)
	}
	meshed("DISABLE")
}

// Which policy wins: the workload's (selector) over the namespace's over
// the mesh's, and portLevelMtls for one workload port (9080 PERMISSIVE in
// a STRICT workload, while 9090, which no service claims, stays STRICT).
func TestPeerAuthenticationPrecedence(t *testing.T) {
	leak.Check(t)
	const base = "127.77.151"
	ca := certtest.NewCA(t)
	pas := peerAuthn("istio-system", "default", "{mtls: {mode: STRICT}}") +
		peerAuthn("default", "default", "{mtls: {mode: PERMISSIVE}}")
	m := meshtest.New(t, paymentConfig(base, pas))
	m.Backend(base+".2:9080", "payment", nil)
	m.Backend(base+".2:9090", "payment-admin", nil)
	server := m.Sidecar("payment", base+".2", map[string]string{"app": "payment"}, withIdentity(t, ca, certtest.SPIFFE("default", "payment"), certtest.LeafOptions{}))
	m.WaitSynced()
	in := capture(t, server, base+".2:15006", netip.MustParseAddrPort(base+".2:9080"))
	admin := capture(t, server, base+".2:15007", netip.MustParseAddrPort(base+".2:9090"))
	if got := plainGET(in); !strings.HasPrefix(got, "200") {
		t.Errorf("namespace PERMISSIVE over mesh STRICT: plaintext got %q", got)
	}

	rewrite(t, m, paymentConfig(base, pas+peerAuthn("default", "payment", `
  selector: {matchLabels: {app: payment}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9080: {mode: PERMISSIVE}`)))
	if got := plainGET(in); !strings.HasPrefix(got, "200") {
		t.Errorf("portLevelMtls 9080 PERMISSIVE: plaintext got %q", got)
	}
	if got := plainGET(admin); strings.HasPrefix(got, "200") {
		t.Errorf("workload STRICT on unclaimed port 9090: plaintext got %q, want refused", got)
	}

	rewrite(t, m, paymentConfig(base, pas+peerAuthn("default", "payment", `
  selector: {matchLabels: {app: payment}}
  mtls: {mode: STRICT}`)))
	if got := plainGET(in); strings.HasPrefix(got, "200") {
		t.Errorf("workload STRICT over namespace PERMISSIVE: plaintext got %q, want refused", got)
	}
}

// STRICT holds on the tunnel port too: a sidecar without an identity
// tunnels in plaintext and is refused where the port takes mTLS only, and
// admitted under PERMISSIVE.
func TestStrictRefusesPlaintextTunnel(t *testing.T) {
	leak.Check(t)
	const base = "127.77.152"
	m := meshtest.New(t, paymentConfig(base, peerAuthn("istio-system", "default", "{mtls: {mode: STRICT}}")))
	m.Backend(base+".2:9080", "payment", nil)
	server := m.Sidecar("payment", base+".2", map[string]string{"app": "payment"})
	client := m.Sidecar("sleep", base+".1", nil)
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	if code, _, body, _ := get(c, "http://payment:9080/", nil); code == 200 {
		t.Errorf("STRICT: a plaintext tunnel got %d %q, want refused", code, body)
	}
	if n := statInt(t, server, "listener.tunnel.no_filter_chain_match"); n < 1 {
		t.Errorf("refused tunnels counted %d", n)
	}
	rewrite(t, m, paymentConfig(base, peerAuthn("istio-system", "default", "{mtls: {mode: PERMISSIVE}}")))
	meshtest.Eventually(t, 5*time.Second, func() string {
		if code, flags, body, _ := get(c, "http://payment:9080/", nil); code != 200 {
			return fmt.Sprintf("PERMISSIVE: %d %s %q", code, flags, body)
		}
		return ""
	})
}

package sidecar_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// withIdentity gives a sidecar a workload certificate for spiffeID from ca.
func withIdentity(t testing.TB, ca *certtest.CA, spiffeID string, o certtest.LeafOptions) func(*sidecar.Options) {
	src := certs.NewStatic(ca.Leaf(t, spiffeID, o), ca.Pool())
	return func(opts *sidecar.Options) { opts.Identity = src }
}

// paymentConfig is a Service whose one endpoint (base.2) runs a sidecar
// (tlsMode istio) as service account payment, plus extra YAML.
func paymentConfig(base, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: payment}
spec:
  selector: {app: payment}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: payment}
spec: {address: %[1]s.2, serviceAccount: payment, labels: {app: payment, security.istio.io/tlsMode: istio}}
%[2]s`, base, extra)
}

// get sends GET url through the pod's forward proxy and returns the
// status, the X-Trellis-Flags of a local reply, and the body.
func get(c *http.Client, url string, h map[string]string) (int, string, string, http.Header) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Trellis-Flags"), string(b), resp.Header
}

func statInt(t testing.TB, p *meshtest.Pod, name string) uint64 {
	n, _ := strconv.ParseUint(statsLine(t, p, name), 10, 64)
	return n
}

// Two sidecars with identities from one CA: the client's request reaches
// payment's app over the tunnel inside mTLS (each side counted a
// handshake), later requests reuse the pooled connection (no handshake per
// request), and payment's tunnel port refuses a plaintext CONNECT.
func TestMTLSBetweenSidecars(t *testing.T) {
	leak.Check(t)
	const base = "127.77.140"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentConfig(base, ""))
	m.Backend(base+".2:9080", "payment", nil)
	server := m.Sidecar("payment", base+".2", map[string]string{"app": "payment"}, withIdentity(t, ca, certtest.SPIFFE("default", "payment"), certtest.LeafOptions{}))
	client := m.Sidecar("sleep", base+".1", nil, withIdentity(t, ca, certtest.SPIFFE("default", "sleep"), certtest.LeafOptions{}))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	for i := range 20 {
		if code, flags, body, _ := get(c, "http://payment:9080/", nil); code != 200 || body != "payment" {
			t.Fatalf("request %d: %d %s %q, want payment's 200", i, code, flags, body)
		}
	}
	if n := statInt(t, server, "listener.tunnel.ssl.handshake"); n != 1 {
		t.Errorf("payment's tunnel port completed %d handshakes for 20 requests on one connection, want 1", n)
	}
	if n := statInt(t, client, "tunnel.upstream.ssl.handshake"); n != 1 {
		t.Errorf("the client made %d handshakes, want 1", n)
	}

	// Plaintext to the tunnel port: refused, counted.
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", base+".2:15008")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "CONNECT %s.2:9080 HTTP/1.1\r\nHost: %[1]s.2:9080\r\n\r\nGET / HTTP/1.1\r\nHost: payment\r\n\r\n", base)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(raw); strings.Contains(string(b), "200") || strings.Contains(string(b), "payment") {
		t.Errorf("a plaintext CONNECT got %q", b)
	}
	meshtest.Eventually(t, 5*time.Second, func() string {
		if n := statInt(t, server, "listener.tunnel.ssl.connection_error"); n < 1 {
			return "the refused plaintext connection is not counted"
		}
		return ""
	})
}

// The client checks who answers: a server presenting another identity
// than the endpoint's service account, one from another CA, an expired or
// a not-yet-valid one: the request fails (503 UF) and never reaches the
// app.
func TestMTLSRefusesTheWrongPeer(t *testing.T) {
	leak.Check(t)
	ca := certtest.NewCA(t)
	other := certtest.NewCA(t)
	payment := certtest.SPIFFE("default", "payment")
	for i, tc := range []struct {
		name   string
		server func(*sidecar.Options)
	}{
		{"another identity", withIdentity(t, ca, certtest.SPIFFE("default", "reviews"), certtest.LeafOptions{})},
		{"another CA", withRoots(withIdentity(t, other, payment, certtest.LeafOptions{}), ca)},
		{"expired", withIdentity(t, ca, payment, certtest.LeafOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})},
		{"not yet valid", withIdentity(t, ca, payment, certtest.LeafOptions{NotBefore: time.Now().Add(time.Hour)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := fmt.Sprintf("127.77.%d", 141+i)
			m := meshtest.New(t, paymentConfig(base, ""))
			reached := make(chan struct{}, 10)
			m.Backend(base+".2:9080", "payment", func(w http.ResponseWriter, r *http.Request) { reached <- struct{}{} })
			m.Sidecar("payment", base+".2", map[string]string{"app": "payment"}, tc.server)
			client := m.Sidecar("sleep", base+".1", nil, withIdentity(t, ca, certtest.SPIFFE("default", "sleep"), certtest.LeafOptions{}))
			m.WaitSynced()
			c := client.Client()
			defer c.CloseIdleConnections()
			code, flags, body, _ := get(c, "http://payment:9080/", nil)
			if code != http.StatusServiceUnavailable || !strings.Contains(flags, "UF") {
				t.Errorf("got %d %s %q, want 503 UF", code, flags, body)
			}
			select {
			case <-reached:
				t.Error("the request reached the app")
			default:
			}
			if n := statInt(t, client, "tunnel.upstream.ssl.connection_error"); n < 1 {
				t.Errorf("client TLS failures %d, want counted", n)
			}
		})
	}
}

// withRoots replaces a sidecar's trust bundle (its certificate stays).
func withRoots(f func(*sidecar.Options), ca *certtest.CA) func(*sidecar.Options) {
	return func(o *sidecar.Options) {
		f(o)
		c, _ := o.Identity.Certificate()
		o.Identity = certs.NewStatic(c, ca.Pool())
	}
}

// X-Forwarded-Client-Cert as Istio's sidecars set it: the client's
// forged header is dropped on the way out, and the server's sidecar tells
// its app who called over mTLS: By its own SPIFFE ID, the hash of the
// client's certificate, and the client's SPIFFE ID.
func TestXFCCFromMTLS(t *testing.T) {
	leak.Check(t)
	const base = "127.77.146"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentConfig(base, ""))
	m.Backend(base+".2:9080", "payment", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Seen-Xfcc"] = r.Header.Values("X-Forwarded-Client-Cert")
	})
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment"}, withIdentity(t, ca, certtest.SPIFFE("default", "payment"), certtest.LeafOptions{}))
	clientCert := ca.Leaf(t, certtest.SPIFFE("default", "sleep"), certtest.LeafOptions{})
	client := m.Sidecar("sleep", base+".1", nil, func(o *sidecar.Options) { o.Identity = certs.NewStatic(clientCert, ca.Pool()) })
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	code, flags, body, h := get(c, "http://payment:9080/", map[string]string{"X-Forwarded-Client-Cert": "By=spiffe://cluster.local/ns/default/sa/payment;URI=spiffe://cluster.local/ns/default/sa/admin"})
	if code != 200 {
		t.Fatalf("%d %s %q", code, flags, body)
	}
	sum := sha256.Sum256(clientCert.Certificate[0])
	want := []string{`By=spiffe://cluster.local/ns/default/sa/payment;Hash=` + hex.EncodeToString(sum[:]) + `;Subject="";URI=spiffe://cluster.local/ns/default/sa/sleep`}
	if diff := cmp.Diff(want, h.Values("X-Seen-Xfcc")); diff != "" {
		t.Errorf("XFCC at the app (-want +got):\n%s", diff)
	}
}

// Without mTLS there is no client certificate to tell of: a forged XFCC
// is dropped by the client's sidecar, and one sent straight into the
// server's (plaintext) tunnel by its sidecar.
func TestXFCCForgedIsStripped(t *testing.T) {
	leak.Check(t)
	const base = "127.77.147"
	m := meshtest.New(t, paymentConfig(base, ""))
	m.Backend(base+".2:9080", "payment", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Seen-Xfcc"] = r.Header.Values("X-Forwarded-Client-Cert")
	})
	m.Sidecar("payment", base+".2", map[string]string{"app": "payment"})
	client := m.Sidecar("sleep", base+".1", nil)
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	forged := "By=spiffe://cluster.local/ns/default/sa/payment;URI=spiffe://cluster.local/ns/default/sa/admin"
	code, flags, body, h := get(c, "http://payment:9080/", map[string]string{"X-Forwarded-Client-Cert": forged})
	if code != 200 {
		t.Fatalf("%d %s %q", code, flags, body)
	}
	if got := h.Values("X-Seen-Xfcc"); len(got) != 0 {
		t.Errorf("through the client's sidecar the app saw XFCC %q, want none", got)
	}

	// Straight into payment's tunnel, past any client sidecar.
	raw, err := net.DialTimeout("tcp", base+".2:15008", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(raw, "CONNECT %s.2:9080 HTTP/1.1\r\nHost: %[1]s.2:9080\r\n\r\nGET / HTTP/1.1\r\nHost: payment:9080\r\nX-Forwarded-Client-Cert: %s\r\nConnection: close\r\n\r\n", base, forged)
	b, _ := io.ReadAll(raw)
	if !strings.Contains(string(b), "HTTP/1.1 200") || !strings.Contains(string(b), "\r\n\r\nHTTP/1.1 200") {
		t.Fatalf("tunnel answer %q, want the CONNECT's 200 and then the app's", b)
	}
	if strings.Contains(strings.ToLower(string(b)), "x-seen-xfcc") {
		t.Errorf("through a plaintext tunnel the app saw XFCC: %q", b)
	}
}

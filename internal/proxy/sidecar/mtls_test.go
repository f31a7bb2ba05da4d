package sidecar_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
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

// DestinationRule tls DISABLE: plaintext even to an endpoint with a
// sidecar, dialled directly (the app sees the client pod, not its own
// sidecar, and no tunnel handshake happens). ISTIO_MUTUAL: mutual TLS
// even to an endpoint the registry does not know to have a sidecar, so a
// plain workload there cannot be reached (Istio's semantics: the client
// insists on mTLS).
func TestDestinationRuleDisableAndIstioMutual(t *testing.T) {
	leak.Check(t)
	const base = "127.77.148"
	ca := certtest.NewCA(t)
	m := meshtest.New(t, paymentConfig(base, `---
apiVersion: v1
kind: Service
metadata: {name: legacy}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: legacy}
spec: {address: `+base+`.3, serviceAccount: legacy, labels: {app: legacy}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payment}
spec:
  host: payment
  trafficPolicy:
    tls: {mode: DISABLE}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: legacy}
spec:
  host: legacy
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
`))
	m.Backend(base+".2:9080", "payment", nil)
	m.Backend(base+".3:9080", "legacy", nil)
	server := m.Sidecar("payment", base+".2", map[string]string{"app": "payment"}, withIdentity(t, ca, certtest.SPIFFE("default", "payment"), certtest.LeafOptions{}))
	client := m.Sidecar("sleep", base+".1", nil, withIdentity(t, ca, certtest.SPIFFE("default", "sleep"), certtest.LeafOptions{}))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()

	code, flags, body, h := get(c, "http://payment:9080/", nil)
	if code != 200 || body != "payment" {
		t.Fatalf("DISABLE: %d %s %q", code, flags, body)
	}
	if host, _, _ := net.SplitHostPort(h.Get("X-Seen-Remote")); host != base+".1" {
		t.Errorf("DISABLE: the app saw a connection from %s, want the client pod %s.1 dialling it directly", host, base)
	}
	if n := statInt(t, server, "listener.tunnel.ssl.handshake") + statInt(t, client, "tunnel.upstream.ssl.handshake"); n != 0 {
		t.Errorf("DISABLE: %d TLS handshakes, want none", n)
	}

	code, flags, body, _ = get(c, "http://legacy:9080/", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(flags, "UF") {
		t.Errorf("ISTIO_MUTUAL to a workload without a sidecar: %d %s %q, want 503 UF", code, flags, body)
	}
}

// writePEM writes a certificate chain (and key) as PEM files.
func writePEM(t *testing.T, dir, name string, c *tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	var b []byte
	for _, der := range c.Certificate {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	certFile = filepath.Join(dir, name+".pem")
	if err := os.WriteFile(certFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if c.PrivateKey != nil {
		k, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		keyFile = filepath.Join(dir, name+"-key.pem")
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// tlsBackend serves name over TLS with cert at addr, asking for a client
// certificate from clientCAs when that is set.
func tlsBackend(t *testing.T, addr, name string, cert *tls.Certificate, clientCAs *x509.CertPool) {
	t.Helper()
	srv := meshtest.Backend(t, "127.0.0.1:0", name, func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			w.Header().Set("X-Seen-Client-Cert", r.TLS.PeerCertificates[0].Subject.CommonName+strings.Join(r.TLS.PeerCertificates[0].DNSNames, ","))
		}
		io.WriteString(w, name)
	})
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
	if clientCAs != nil {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs
	}
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); ln.Close() })
}

// TLS origination for services outside the mesh: SIMPLE verifies the
// server against caCertificates (the system's trust store without them)
// and the SNI (or subjectAltNames), and a server whose certificate does
// not match is refused, unless insecureSkipVerify; MUTUAL also presents
// the client certificate the files name.
func TestDestinationRuleSimpleAndMutual(t *testing.T) {
	leak.Check(t)
	const base = "127.77.149"
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	caFile, _ := writePEM(t, dir, "ca", &tls.Certificate{Certificate: [][]byte{ca.Cert.Raw}})
	clientFile, clientKey := writePEM(t, dir, "client", ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"sleep.client"}}))
	tlsBackend(t, base+".5:8443", "secure", ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"secure.example"}}), nil)
	tlsBackend(t, base+".6:8443", "impostor", ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"impostor.example"}}), nil)
	tlsBackend(t, base+".7:8443", "mutual", ca.Leaf(t, "", certtest.LeafOptions{DNSNames: []string{"mutual.example"}}), ca.Pool())
	cfg := externalTLSEntry("secure.example", base+".5", `{mode: SIMPLE, caCertificates: `+caFile+`, sni: secure.example}`) +
		externalTLSEntry("impostor.example", base+".6", `{mode: SIMPLE, caCertificates: `+caFile+`, sni: impostor.example, subjectAltNames: [secure.example]}`) +
		externalTLSEntry("mutual.example", base+".7", `{mode: MUTUAL, caCertificates: `+caFile+`, clientCertificate: `+clientFile+`, privateKey: `+clientKey+`, sni: mutual.example}`) +
		externalTLSEntry("nocert.example", base+".7", `{mode: SIMPLE, caCertificates: `+caFile+`, sni: mutual.example}`) +
		externalTLSEntry("skipverify.example", base+".6", `{mode: SIMPLE, insecureSkipVerify: true, sni: impostor.example}`) +
		externalTLSEntry("systemroots.example", base+".5", `{mode: SIMPLE, sni: secure.example}`)
	m := meshtest.New(t, cfg)
	client := m.Sidecar("sleep", base+".1", nil)
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()

	if code, flags, body, _ := get(c, "http://secure.example:8443/", nil); code != 200 || body != "secure" {
		t.Errorf("SIMPLE: %d %s %q, want the TLS backend's 200", code, flags, body)
	}
	if code, flags, body, _ := get(c, "http://impostor.example:8443/", nil); code != http.StatusServiceUnavailable {
		t.Errorf("SIMPLE to a server without the subject alt name: %d %s %q, want 503", code, flags, body)
	}
	code, flags, body, h := get(c, "http://mutual.example:8443/", nil)
	if code != 200 || body != "mutual" || h.Get("X-Seen-Client-Cert") != "sleep.client" {
		t.Errorf("MUTUAL: %d %s %q (client cert %q), want 200 from mutual with sleep.client's certificate", code, flags, body, h.Get("X-Seen-Client-Cert"))
	}
	if code, flags, body, _ := get(c, "http://nocert.example:8443/", nil); code == 200 {
		t.Errorf("SIMPLE to a server that requires a client certificate: %d %s %q, want a failure", code, flags, body)
	}
	if code, flags, body, _ := get(c, "http://skipverify.example:8443/", nil); code != 200 || body != "impostor" {
		t.Errorf("SIMPLE with insecureSkipVerify: %d %s %q, want the server's 200 unverified", code, flags, body)
	}
	if code, flags, body, _ := get(c, "http://systemroots.example:8443/", nil); code != http.StatusServiceUnavailable {
		t.Errorf("SIMPLE without caCertificates to a server from a private CA: %d %s %q, want 503 (verified against the system's trust store)", code, flags, body)
	}
	if n := statInt(t, client, "upstream.origination.ssl.handshake"); n < 2 {
		t.Errorf("origination handshakes %d, want at least 2", n)
	}
}

// externalTLSEntry is a MESH_EXTERNAL ServiceEntry for host at ip:8443
// and a DestinationRule originating TLS to it with the tls policy given
// (flow YAML).
func externalTLSEntry(host, ip, tls string) string {
	return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s}
spec:
  hosts: [%[1]s]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8443, name: http, protocol: HTTP}]
  endpoints: [{address: %[2]s}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s}
spec:
  host: %[1]s
  trafficPolicy:
    tls: %[3]s
`, host, ip, tls)
}

package controlplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellismesh/trellis/internal/identity"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/xds"
)

const reviewsSvc = `apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
`

// startSecure starts a control plane on a config folder holding files,
// with a secure port on loopback.
func startSecure(t *testing.T, opts Options, files map[string]string) *ControlPlane {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.ConfigPaths = []string{dir}
	opts.XDSListener, opts.SecureXDSListener = lis, secure
	opts.Log = slog.New(slog.DiscardHandler)
	opts.Debounce, opts.MaxDelay = 10*time.Millisecond, 50*time.Millisecond
	cp, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Stop() })
	return cp
}

// rootPool is the trust bundle a sidecar reads from root-cert.pem.
func rootPool(t *testing.T, cp *ControlPlane) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(cp.RootCertPEM()) {
		t.Fatal("RootCertPEM holds no certificate")
	}
	return p
}

// dialSecure connects to the secure port as a proxy does: the server
// verified against the root under Istio's name for istiod.
func dialSecure(t *testing.T, cp *ControlPlane, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: rootPool(t, cp), ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	cc, err := grpc.NewClient(cp.SecureAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// certify asks the CA on the secure port for a certificate with token,
// as a sidecar does at start.
func certify(t *testing.T, cp *ControlPlane, token string) (*tls.Certificate, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(dialSecure(t, cp, nil)).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
	})
	if err != nil {
		return nil, err
	}
	cert := &tls.Certificate{PrivateKey: key}
	for _, p := range resp.GetCertChain() {
		b, _ := pem.Decode([]byte(p))
		cert.Certificate = append(cert.Certificate, b.Bytes)
	}
	cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert, nil
}

// firstDelta asks for clusters as node and returns the first response.
func firstDelta(t *testing.T, cc *grpc.ClientConn, node *corev3.Node) (*discoverygrpc.DeltaDiscoveryResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		return nil, err
	}
	return st.Recv()
}

// A sidecar's whole path on the secure port: its credential gets it a
// certificate for its identity, which gets it its config; plaintext 15010
// keeps working beside it; the root survives a restart.
func TestSecurePort(t *testing.T) {
	leak.Check(t)
	caDir := filepath.Join(t.TempDir(), "ca")
	cp := startSecure(t, Options{CADir: caDir}, map[string]string{"svc.yaml": reviewsSvc})

	token, err := cp.IssueCredential("default", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := certify(t, cp, token)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := identity.FromCertificate(cert.Leaf); err != nil || id.String() != "spiffe://cluster.local/ns/default/sa/reviews" {
		t.Fatalf("issued %v (%v)", id, err)
	}
	node := &corev3.Node{Id: xds.NodeID("127.0.0.10", "reviews-0", "default")}
	resp, err := firstDelta(t, dialSecure(t, cp, cert), node)
	if err != nil {
		t.Fatalf("ADS with the issued certificate: %v", err)
	}
	if len(resp.GetResources()) == 0 {
		t.Fatal("no clusters on the secure port")
	}
	_, err = firstDelta(t, dialSecure(t, cp, nil), node)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ADS without a client certificate: %v, want Unauthenticated", err)
	}
	_, err = firstDelta(t, dialSecure(t, cp, cert), &corev3.Node{Id: xds.NodeID("127.0.0.10", "reviews-0", "payments")})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ADS as another namespace: %v, want PermissionDenied", err)
	}
	cp.RevokeCredential(token)
	if _, err := certify(t, cp, token); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked credential: %v", err)
	}

	plain, err := grpc.NewClient(cp.Addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := firstDelta(t, plain, &corev3.Node{Id: xds.NodeID("127.0.0.10", "reviews-0", "default")}); err != nil {
		t.Fatalf("plaintext xDS: %v", err)
	}

	// The serving certificate: the names proxies dial, from the mesh CA.
	conn, err := tls.Dial("tcp", cp.SecureAddr().String(), &tls.Config{RootCAs: rootPool(t, cp), ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("the secure port's certificate does not verify for 127.0.0.1: %v", err)
	}
	served := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	for _, name := range []string{"istiod.istio-system.svc", "trellis-controlplane", "localhost", "::1"} {
		if err := served.VerifyHostname(name); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	if got := served.URIs; len(got) != 1 || got[0].String() != "spiffe://cluster.local/ns/istio-system/sa/istiod" {
		t.Errorf("serving certificate URIs %v", got)
	}

	kept, err := os.ReadFile(filepath.Join(caDir, identity.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kept, cp.RootCertPEM()) {
		t.Fatal("RootCertPEM is not the root kept in the CA dir")
	}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	again := startSecure(t, Options{CADir: caDir}, map[string]string{"svc.yaml": reviewsSvc})
	if !bytes.Equal(again.RootCertPEM(), kept) {
		t.Fatal("a restart made a new root")
	}
	// The certificate from before the restart still gets config.
	if _, err := firstDelta(t, dialSecure(t, again, cert), node); err != nil {
		t.Fatalf("certificate from before the restart: %v", err)
	}
}

// The trust domain is MeshConfig's, unless overridden.
func TestTrustDomain(t *testing.T) {
	leak.Check(t)
	mesh := map[string]string{"mesh.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    trustDomain: example.org
`}
	for _, tc := range []struct {
		override, want string
	}{{"", "example.org"}, {"override.test", "override.test"}} {
		cp := startSecure(t, Options{TrustDomain: tc.override}, mesh)
		if got := cp.TrustDomain(); got != tc.want {
			t.Fatalf("TrustDomain() = %q, want %q", got, tc.want)
		}
		tok, err := cp.IssueCredential("shop", "checkout")
		if err != nil {
			t.Fatal(err)
		}
		cert, err := certify(t, cp, tok)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cert.Leaf.URIs[0].String(), "spiffe://"+tc.want+"/ns/shop/sa/checkout"; got != want {
			t.Fatalf("issued %s, want %s", got, want)
		}
	}
	if got := startSecure(t, Options{}, nil).TrustDomain(); got != "cluster.local" {
		t.Fatalf("default trust domain %q", got)
	}
}

// The secure port's certificate is renewed before it expires.
func TestServingCertificateRenewed(t *testing.T) {
	leak.Check(t)
	cp := startSecure(t, Options{servingCertTTL: 2 * time.Second}, nil)
	serial := func() string {
		conn, err := tls.Dial("tcp", cp.SecureAddr().String(), &tls.Config{RootCAs: rootPool(t, cp), ServerName: "localhost", NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	deadline := time.Now().Add(10 * time.Second)
	for serial() == first {
		if time.Now().After(deadline) {
			t.Fatal("serving certificate not renewed within 10s of a 2s lifetime")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A taken secure address gives an error that says what to do, and the
// plaintext listener Start opened is released.
func TestSecureAddressInUse(t *testing.T) {
	leak.Check(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	plain := freeAddr(t)
	_, err = Start(context.Background(), Options{ConfigPaths: []string{t.TempDir()}, XDSAddress: plain, SecureXDSAddress: taken.Addr().String(), Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "--secure-xds-address") {
		t.Fatalf("got %v, want an error naming --secure-xds-address", err)
	}
	l, err := net.Listen("tcp", plain)
	if err != nil {
		t.Fatalf("plaintext listener left open: %v", err)
	}
	l.Close()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A bad plug-in CA stops the start with the file at fault.
func TestBadPluginCA(t *testing.T) {
	leak.Check(t)
	dir := t.TempDir()
	_, err := Start(context.Background(), Options{ConfigPaths: []string{t.TempDir()}, XDSAddress: freeAddr(t), PluginCADir: dir, Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, identity.CACertFile)) {
		t.Fatalf("got %v, want an error naming %s", err, identity.CACertFile)
	}
}

// Local mode serves the secure port on a Unix socket in the mesh's state
// dir, so parallel meshes never collide: TLS and the CA work there too.
func TestSecurePortOnUnixSocket(t *testing.T) {
	leak.Check(t)
	sock := filepath.Join(t.TempDir(), "xds-tls.sock")
	secure, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := Start(context.Background(), Options{ConfigPaths: []string{t.TempDir()}, XDSListener: mustListen(t), SecureXDSListener: secure, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	if got := cp.SecureAddr().String(); got != sock {
		t.Fatalf("SecureAddr %q, want %q", got, sock)
	}
	tok, err := cp.IssueCredential("default", "sleep")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: rootPool(t, cp), ServerName: "localhost", MinVersion: tls.VersionTLS13}
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(cc).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetCertChain()); n != 2 {
		t.Fatalf("chain of %d, want leaf and root", n)
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

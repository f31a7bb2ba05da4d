package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellismesh/trellis/internal/identity"
	"github.com/trellismesh/trellis/internal/testing/certtest"
)

// startSecure serves the test mesh on a TLS port as the control plane's
// secure port does: the mesh CA's serving certificate, client
// certificates verified when given, RequireCertIdentity on streams.
func startSecure(t *testing.T) (*env, *identity.CA) {
	t.Helper()
	ca, err := identity.NewCA(identity.CAOptions{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sc := &identity.ServingCert{CA: ca, DNS: []string{"localhost"}}
	opts := append(ServerOptions(), grpc.Creds(credentials.NewTLS(ca.ServerTLSConfig(sc))), grpc.ChainStreamInterceptor(RequireCertIdentity()))
	return startWith(t, opts...), ca
}

// meshCert is a workload certificate from ca for ns/sa.
func meshCert(t *testing.T, ca *identity.CA, ns, sa string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.Sign(csr, identity.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(chain[0]))
	return &tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key}
}

func dialTLS(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate) discoverygrpc.AggregatedDiscoveryServiceClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return discoverygrpc.NewAggregatedDiscoveryServiceClient(cc)
}

// nodeAs is a sidecar node in namespace ns claiming service account sa
// ("" claims none).
func nodeAs(ns, sa string) *corev3.Node {
	md := map[string]any{"INTERCEPTION_MODE": "NONE"}
	if sa != "" {
		md["SERVICE_ACCOUNT"] = sa
	}
	s, _ := structpb.NewStruct(md)
	return &corev3.Node{Id: NodeID("127.0.0.10", "reviews-1", ns), Metadata: s}
}

// firstDelta opens a delta stream, sends node's first request and returns
// the first response or the stream's error.
func firstDelta(t *testing.T, c discoverygrpc.AggregatedDiscoveryServiceClient, node *corev3.Node) (*discoverygrpc.DeltaDiscoveryResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	st, err := c.DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		return nil, err
	}
	return st.Recv()
}

func wantStatus(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	for _, p := range parts {
		if !strings.Contains(status.Convert(err).Message(), p) {
			t.Errorf("message %q does not say %q", status.Convert(err).Message(), p)
		}
	}
}

// On the secure port a proxy is its certificate: its own namespace gets
// config, another is refused naming both, and no certificate gets
// nothing.
func TestSecurePortIdentityFromCertificate(t *testing.T) {
	e, ca := startSecure(t)
	reviews := meshCert(t, ca, "default", "reviews")

	resp, err := firstDelta(t, dialTLS(t, e.addr, ca.Roots(), reviews), nodeAs("default", ""))
	if err != nil {
		t.Fatalf("matching certificate: %v", err)
	}
	if len(resp.GetResources()) == 0 {
		t.Fatal("matching certificate got no clusters")
	}
	found := false
	for _, p := range e.srv.Status() {
		found = found || p.Namespace == "default"
	}
	if !found {
		t.Fatalf("proxy not registered in its certificate's namespace: %+v", e.srv.Status())
	}

	_, err = firstDelta(t, dialTLS(t, e.addr, ca.Roots(), reviews), nodeAs("other", ""))
	wantStatus(t, err, codes.PermissionDenied, "spiffe://cluster.local/ns/default/sa/reviews", `namespace "other"`)

	_, err = firstDelta(t, dialTLS(t, e.addr, ca.Roots(), reviews), nodeAs("default", "ratings"))
	wantStatus(t, err, codes.PermissionDenied, `SERVICE_ACCOUNT is "ratings"`, `service account "reviews"`)

	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "other"})
	_, err = firstDelta(t, dialTLS(t, e.addr, ca.Roots(), reviews), &corev3.Node{Id: "proxyless-1", Metadata: md})
	wantStatus(t, err, codes.PermissionDenied, `NAMESPACE is "other"`)

	_, err = firstDelta(t, dialTLS(t, e.addr, ca.Roots(), nil), nodeAs("default", ""))
	wantStatus(t, err, codes.Unauthenticated, "needs a mesh client certificate")

	// A certificate from another CA does not get past the handshake.
	foreign := certtest.NewCA(t).Leaf(t, certtest.SPIFFE("default", "reviews"), certtest.LeafOptions{})
	if _, err = firstDelta(t, dialTLS(t, e.addr, ca.Roots(), foreign), nodeAs("default", "")); err == nil {
		t.Fatal("a foreign certificate got config")
	}
}

// State-of-the-world streams (proxyless gRPC) are held to the same rule,
// and hear why they were refused.
func TestSecurePortSotW(t *testing.T) {
	e, ca := startSecure(t)
	c := dialTLS(t, e.addr, ca.Roots(), meshCert(t, ca, "default", "reviews"))
	sotw := func(node *corev3.Node) (*discoverygrpc.DiscoveryResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.StreamAggregatedResources(ctx)
		if err != nil {
			return nil, err
		}
		if err := st.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
			return nil, err
		}
		return st.Recv()
	}
	grpcNode := func(ns string) *corev3.Node {
		md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "GENERATOR": "grpc"})
		return &corev3.Node{Id: "proxyless-" + ns, Metadata: md}
	}
	if _, err := sotw(grpcNode("default")); err != nil {
		t.Fatalf("matching certificate: %v", err)
	}
	_, err := sotw(grpcNode("other"))
	wantStatus(t, err, codes.PermissionDenied, `NAMESPACE is "other"`, "spiffe://cluster.local/ns/default/sa/reviews")
}

// BindNode writes the certificate's identity into the node, so a node
// that claims no service account is scoped as its certificate's.
func TestBindNodeFillsIdentity(t *testing.T) {
	id := identity.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "checkout"}
	n := &corev3.Node{Id: NodeID("127.0.0.1", "checkout-0", "shop")}
	if err := BindNode(n, id); err != nil {
		t.Fatal(err)
	}
	p, err := ParseNode(n)
	if err != nil {
		t.Fatal(err)
	}
	if p.Namespace != "shop" || p.ServiceAccount != "checkout" {
		t.Fatalf("ParseNode after BindNode: namespace %q service account %q", p.Namespace, p.ServiceAccount)
	}
	// The id's two places must both agree.
	if err := BindNode(&corev3.Node{Id: "sidecar~127.0.0.1~checkout-0.shop~payment.svc.cluster.local"}, id); err == nil || !strings.Contains(err.Error(), `node id names namespace "payment"`) {
		t.Fatalf("id naming two namespaces: %v", err)
	}
}

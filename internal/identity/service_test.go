package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
)

// serve runs the CA service on a loopback TLS port as the control plane
// does.
func serve(t testing.TB, ca *CA) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sc := &ServingCert{CA: ca, DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServerTLSConfig(sc))))
	securityv1alpha1.RegisterIstioCertificateServiceServer(g, NewService(ca, quiet()))
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// client dials the CA as a proxy would: the server verified against the
// mesh roots, with a client certificate when it has one.
func client(t testing.TB, addr string, roots *x509.CertPool, cert *tls.Certificate) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		// As the proxy's certs.ClientConfig: sent whatever CAs the server
		// names.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return securityv1alpha1.NewIstioCertificateServiceClient(cc)
}

func bearer(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func csrPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// paymentClaims is request metadata naming payment every way a forger
// might.
func paymentClaims(t testing.TB) *structpb.Struct {
	s, err := structpb.NewStruct(map[string]any{"WorkloadName": "payment", "SERVICE_ACCOUNT": "payment", "NAMESPACE": "shop", "identity": payment.String()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func leafOf(t testing.TB, resp *securityv1alpha1.IstioCertificateResponse) *x509.Certificate {
	t.Helper()
	return parseChain(t, resp.GetCertChain())[0]
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("got %v, want %s with %q", err, code, msg)
	}
}

// A caller holding checkout's credential gets checkout's certificate
// whatever its CSR and metadata claim; unknown, revoked and missing
// credentials are refused with what to send.
func TestCreateCertificateIdentityFromCredential(t *testing.T) {
	leak.Check(t)
	ca := newCA(t, CAOptions{})
	addr := serve(t, ca)
	c := client(t, addr, ca.Roots(), nil)
	tok, err := ca.Credentials.Issue(checkout)
	if err != nil {
		t.Fatal(err)
	}
	key, csr := csrFor(t, payment.String())
	resp, err := c.CreateCertificate(bearer(tok), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr), Metadata: paymentClaims(t)})
	if err != nil {
		t.Fatal(err)
	}
	leaf := leafOf(t, resp)
	if id, err := FromCertificate(leaf); err != nil || id != checkout {
		t.Fatalf("checkout's credential asking for payment got %v (%v), want %s", id, err, checkout)
	}
	if len(leaf.URIs) != 1 || len(leaf.DNSNames) != 0 {
		t.Fatalf("leaf names %v %v", leaf.URIs, leaf.DNSNames)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Fatal("leaf does not carry the CSR's key")
	}
	if err := verify(parseChain(t, resp.GetCertChain()), ca.Roots()); err != nil {
		t.Fatal(err)
	}

	_, csr = csrFor(t)
	req := &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr)}
	_, err = c.CreateCertificate(context.Background(), req)
	wantCode(t, err, codes.Unauthenticated, "authorization: Bearer <token>")
	_, err = c.CreateCertificate(bearer("not-a-token"), req)
	wantCode(t, err, codes.Unauthenticated, "the token is not valid")
	_, err = c.CreateCertificate(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic "+tok), req)
	wantCode(t, err, codes.Unauthenticated, "must be `Bearer <token>`")
	// A prefix of the token is not the token.
	_, err = c.CreateCertificate(bearer(tok[:len(tok)-1]), req)
	wantCode(t, err, codes.Unauthenticated, "the token is not valid")

	ca.Credentials.Revoke(tok)
	_, err = c.CreateCertificate(bearer(tok), req)
	wantCode(t, err, codes.Unauthenticated, "the token is not valid")

	_, err = c.CreateCertificate(bearer(mustIssue(t, ca, payment)), &securityv1alpha1.IstioCertificateRequest{Csr: "junk"})
	wantCode(t, err, codes.InvalidArgument, "csr: must be one PEM block")
}

func mustIssue(t testing.TB, ca *CA, id ID) string {
	t.Helper()
	tok, err := ca.Credentials.Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// validity_duration is seconds; 0 or less is the default; more than the
// maximum is capped.
func TestCreateCertificateValidity(t *testing.T) {
	leak.Check(t)
	ca := newCA(t, CAOptions{MaxTTL: 48 * time.Hour})
	c := client(t, serve(t, ca), ca.Roots(), nil)
	tok := mustIssue(t, ca, checkout)
	for _, tc := range []struct {
		secs int64
		want time.Duration
	}{{0, DefaultTTL}, {-5, DefaultTTL}, {600, 10 * time.Minute}, {1 << 62, 48 * time.Hour}} {
		_, csr := csrFor(t)
		now := time.Now()
		resp, err := c.CreateCertificate(bearer(tok), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr), ValidityDuration: tc.secs})
		if err != nil {
			t.Fatal(err)
		}
		if got := leafOf(t, resp).NotAfter.Sub(now); got < tc.want-2*time.Second || got > tc.want+2*time.Second {
			t.Errorf("validity_duration %d: lives %s, want %s", tc.secs, got, tc.want)
		}
	}
}

// A caller with a mesh certificate renews for that identity without a
// token; a certificate from another CA, or a token naming someone else,
// gets nothing.
func TestCreateCertificateRenewWithMeshCert(t *testing.T) {
	leak.Check(t)
	ca := newCA(t, CAOptions{})
	addr := serve(t, ca)
	mine := issueTLS(t, ca, checkout)
	c := client(t, addr, ca.Roots(), mine)
	_, csr := csrFor(t, payment.String())
	resp, err := c.CreateCertificate(context.Background(), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr), Metadata: paymentClaims(t)})
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := FromCertificate(leafOf(t, resp)); id != checkout {
		t.Fatalf("renewal with checkout's certificate got %s", id)
	}
	// checkout's certificate and payment's token: two identities.
	_, err = c.CreateCertificate(bearer(mustIssue(t, ca, payment)), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr)})
	wantCode(t, err, codes.PermissionDenied, "name two identities")

	// A certificate from another CA for payment is not a mesh certificate:
	// the handshake refuses it.
	foreign := certtest.NewCA(t).Leaf(t, payment.String(), certtest.LeafOptions{})
	_, err = client(t, addr, ca.Roots(), foreign).CreateCertificate(context.Background(), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr)})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("foreign client certificate: %v, want the handshake refused", err)
	}
}

// issueTLS gets a certificate for id from ca, as a proxy holds it.
func issueTLS(t testing.TB, ca *CA, id ID) *tls.Certificate {
	t.Helper()
	key, csr := csrFor(t)
	chain, err := ca.Sign(csr, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{PrivateKey: key}
	for _, c := range parseChain(t, chain)[:len(chain)-1] {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

// An expired certificate on a connection made while it was valid does not
// renew.
func TestPeerCertificateExpiredOnLongConnection(t *testing.T) {
	ca := newCA(t, CAOptions{})
	cert := issueTLS(t, ca, checkout)
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	ctx := peerContext(leaf)
	if id, err := (PeerCertificate{}).Authenticate(ctx); err != nil || id != checkout {
		t.Fatalf("valid: %v %v", id, err)
	}
	later := func() time.Time { return leaf.NotAfter.Add(time.Second) }
	if _, err := (PeerCertificate{Now: later}).Authenticate(ctx); err == nil || !strings.Contains(err.Error(), "valid only from") {
		t.Fatalf("expired: %v", err)
	}
	// Its root rotated out while the connection stayed open.
	if id, err := (PeerCertificate{Roots: ca.Roots}).Authenticate(ctx); err != nil || id != checkout {
		t.Fatalf("before rotation: %v %v", id, err)
	}
	if err := ca.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := (PeerCertificate{Roots: ca.Roots}).Authenticate(ctx); err != nil {
		t.Fatalf("old root still in the bundle: %v", err)
	}
	if err := ca.RemoveOldRoots(); err != nil {
		t.Fatal(err)
	}
	if _, err := (PeerCertificate{Roots: ca.Roots}).Authenticate(ctx); err == nil || !strings.Contains(err.Error(), "no longer verifies") {
		t.Fatalf("root removed: %v", err)
	}
}

// The secure port verifies client certificates against the roots of the
// moment: after a rotation, certificates from the new root and the old
// one are both accepted without restarting the server.
func TestRenewAcrossRootRotation(t *testing.T) {
	leak.Check(t)
	ca := newCA(t, CAOptions{})
	addr := serve(t, ca)
	old := issueTLS(t, ca, checkout)
	if err := ca.Rotate(); err != nil {
		t.Fatal(err)
	}
	fresh := issueTLS(t, ca, payment)
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want ID
	}{{"old root", old, checkout}, {"new root", fresh, payment}} {
		_, csr := csrFor(t)
		resp, err := client(t, addr, ca.Roots(), tc.cert).CreateCertificate(context.Background(), &securityv1alpha1.IstioCertificateRequest{Csr: csrPEM(csr)})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		chain := parseChain(t, resp.GetCertChain())
		if id, _ := FromCertificate(chain[0]); id != tc.want {
			t.Fatalf("%s: renewed as %s", tc.name, id)
		}
		if !chain[len(chain)-1].Equal(ca.Root()) {
			t.Fatalf("%s: renewal not chained to the new root", tc.name)
		}
	}
}

package sidecar_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/testing/certtest"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// xfccGreeter answers UnaryCall with the X-Forwarded-Client-Cert its
// sidecar set (in the response's Hostname).
type xfccGreeter struct {
	testpb.UnimplementedTestServiceServer
}

func (xfccGreeter) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	return &testpb.SimpleResponse{Hostname: strings.Join(md.Get("x-forwarded-client-cert"), ",")}, nil
}

// A proxyless grpc-go client's mTLS offers ALPN h2 only (grpc-go's TLS
// credentials): under STRICT the sidecar terminates it as istiod's strict
// chains do, whatever the ALPN, and the app learns the caller's SPIFFE ID
// in XFCC; a plaintext grpc-go client is refused. Under PERMISSIVE the
// mTLS chain matches Istio's ALPN only, as in Istio, so grpc-go's h2 TLS
// passes to the app untouched (which speaks no TLS: the call fails) while
// plaintext gets through. (Before STRICT took any ALPN, the grpc-go mTLS
// client was refused there too.) An AuthorizationPolicy judges those
// HTTP/2 calls by the caller's identity. Connections enter as transparent mode's
// capture hands them to 15006.
func TestStrictTerminatesGRPCGoMTLS(t *testing.T) {
	leak.Check(t)
	const base = "127.77.151"
	ca := certtest.NewCA(t)
	sleep := certs.NewStatic(ca.Leaf(t, certtest.SPIFFE("default", "sleep"), certtest.LeafOptions{}), ca.Pool())
	cfg := func(mode string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: greeter}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 7070}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter}
spec: {address: %s.2, serviceAccount: greeter, labels: {app: greeter, security.istio.io/tlsMode: istio}}
---
%s`, base, peerAuthn("istio-system", "default", "{mtls: {mode: "+mode+"}}"))
	}
	m := meshtest.New(t, cfg("STRICT"))
	ln, err := net.Listen("tcp", base+".2:7070")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, xfccGreeter{})
	go srv.Serve(ln)
	defer srv.Stop()
	server := m.Sidecar("greeter", base+".2", map[string]string{"app": "greeter"}, withIdentity(t, ca, certtest.SPIFFE("default", "greeter"), certtest.LeafOptions{}))
	m.WaitSynced()
	in := capture(t, server, base+".2:15006", netip.MustParseAddrPort(base+".2:7070"))

	call := func(creds credentials.TransportCredentials) (string, error) {
		cc, err := grpc.NewClient("passthrough:///"+in, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{})
		return resp.GetHostname(), err
	}
	mtls := credentials.NewTLS(certs.ClientConfig(sleep, func(id string) bool { return id == certtest.SPIFFE("default", "greeter") }))

	xfcc, err := call(mtls)
	if err != nil || !strings.Contains(xfcc, "URI="+certtest.SPIFFE("default", "sleep")) {
		t.Errorf("STRICT: grpc-go over mTLS (ALPN h2): XFCC %q, err %v; want the caller's SPIFFE ID", xfcc, err)
	}
	if _, err := call(insecure.NewCredentials()); err == nil {
		t.Error("STRICT: a plaintext grpc-go client got through")
	}

	// HTTP/2 connections are handed from the connection manager's fast
	// path to net/http: authorization must still judge them, by the
	// caller's identity (it did not: the hand-off dropped both).
	rewrite(t, m, cfg("STRICT")+`---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-checkout}
spec:
  selector: {matchLabels: {app: greeter}}
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/checkout]}}]}]
`)
	meshtest.Eventually(t, 10*time.Second, func() string {
		if _, err := call(mtls); status.Code(err) != codes.PermissionDenied {
			return fmt.Sprintf("STRICT with an ALLOW for checkout only: sleep's grpc-go call got %v, want PERMISSION_DENIED", err)
		}
		return ""
	})

	rewrite(t, m, cfg("PERMISSIVE"))
	if xfcc, err := call(insecure.NewCredentials()); err != nil || xfcc != "" {
		t.Errorf("PERMISSIVE: plaintext grpc-go: XFCC %q, err %v; want through, without an identity", xfcc, err)
	}
	if _, err := call(mtls); err == nil {
		t.Error("PERMISSIVE: grpc-go's h2 mTLS was terminated; Istio's PERMISSIVE chain takes its own ALPN only")
	}
}

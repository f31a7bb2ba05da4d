package grpcinterop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// Sidecars and proxyless gRPC in one mesh (helper H9): a sidecar reaches
// an xDS-enabled grpc-go server, which has no tunnel port, with direct
// mTLS (its endpoint is marked proxyless by Istio's grpc-agent
// annotation), and each side proves its identity to the other. The other
// direction (a grpc-go client at a sidecar'd server) needs the server's
// sidecar to receive the connection, which explicit mode cannot arrange
// honestly (the app listens on the endpoint's address itself): it is
// tested through trellis up in transparent mode
// (internal/local/proxyless_up_test.go).

// sidecarDialer makes grpc-go reach addr through the pod's sidecar with
// CONNECT, as an app in explicit mode does through its HTTPS_PROXY.
func sidecarDialer(p *meshtest.Pod) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := p.Dialer().DialContext(ctx, "tcp", net.JoinHostPort(p.IP.String(), "15001"))
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			c.Close()
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			c.Close()
			return nil, fmt.Errorf("CONNECT %s: %s", addr, resp.Status)
		}
		if br.Buffered() > 0 {
			c.Close()
			return nil, errors.New("bytes before the tunnel's first")
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}
}

func sidecarStat(t *testing.T, p *meshtest.Pod, name string) uint64 {
	t.Helper()
	var b strings.Builder
	if err := p.Proxy.WriteStats(&b, "text"); err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// A sidecar with a CA-issued identity calls an xDS-enabled grpc-go server
// (identity greeter, tlsMode istio, so its listener requires a client
// certificate) through the mesh: the server sees the sidecar's SPIFFE ID
// from its verified certificate, and the sidecar counted direct mTLS
// handshakes (no tunnel: the server has none). When a DestinationRule
// says the server must be another identity, the sidecar refuses it: its
// check of the server's SPIFFE ID is real.
func TestSidecarToProxylessServerMTLS(t *testing.T) {
	m, _ := startMTLSMesh(t, "", meshedLabels, 0, 0, meshtest.WithCA())
	id := m.Identity("default", "sleep", 0)
	sleep := m.Sidecar("sleep", "127.79.9.1", map[string]string{"app": "sleep"}, m.WithIdentity(id))
	m.WaitSynced()

	cc, err := grpc.NewClient("passthrough:///greeter:7070",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(sidecarDialer(sleep)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := testgrpc.NewTestServiceClient(cc)
	const want = "spiffe://cluster.local/ns/default/sa/sleep"
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if err != nil {
			t.Fatalf("call %d through the sidecar: %v", i, err)
		}
		if resp.GetUsername() != want || resp.GetServerId() != "v1" {
			t.Fatalf("call %d: server %q saw caller %q, want v1 seeing %s over mTLS", i, resp.GetServerId(), resp.GetUsername(), want)
		}
	}
	if n := sidecarStat(t, sleep, "upstream.proxyless.ssl.handshake"); n == 0 {
		t.Error("the sidecar counted no direct mTLS handshake with the proxyless server")
	}
	if n := sidecarStat(t, sleep, "tunnel.upstream.ssl.handshake"); n != 0 {
		t.Errorf("the sidecar opened %d tunnels; a proxyless server has no tunnel port", n)
	}

	m.setRouting(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/payments"]}
`)
	m.WaitSynced()
	cc2, err := grpc.NewClient("passthrough:///greeter:7070",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(sidecarDialer(sleep)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc2.Close()
	meshtest.Eventually(t, 20*time.Second, func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := testgrpc.NewTestServiceClient(cc2).UnaryCall(ctx, &testgrpc.SimpleRequest{}); err == nil {
			return "a server that is not the identity the DestinationRule names still answered"
		}
		return ""
	})
	if n := sidecarStat(t, sleep, "upstream.proxyless.ssl.connection_error"); n == 0 {
		t.Error("the refusal was not the sidecar's check of the server's identity (no failed handshake counted)")
	}
	m.checkNoNACKs()
}

// A sidecar without an identity reaches a proxyless server directly in
// plaintext, not through a tunnel the server does not have: with
// PeerAuthentication DISABLE on the server (a plaintext listener) the
// call goes through, and the server sees no identity.
func TestSidecarWithoutIdentityToProxylessServer(t *testing.T) {
	m, _ := startMTLSMesh(t, `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: greeter, namespace: default}
spec:
  selector: {matchLabels: {app: greeter}}
  mtls: {mode: DISABLE}
`, meshedLabels, 0, 0)
	sleep := m.Sidecar("sleep", "127.79.9.2", map[string]string{"app": "sleep"})
	m.WaitSynced()
	cc, err := grpc.NewClient("passthrough:///greeter:7070",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(sidecarDialer(sleep)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	meshtest.Eventually(t, 20*time.Second, func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if err != nil {
			return "call through a sidecar without an identity: " + err.Error()
		}
		if resp.GetUsername() != "" || resp.GetServerId() != "v1" {
			return fmt.Sprintf("server %q saw caller %q, want v1 and no identity", resp.GetServerId(), resp.GetUsername())
		}
		return ""
	})
	m.checkNoNACKs()
}

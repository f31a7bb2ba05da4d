package grpcwire

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/api/security/v1alpha1"
)

type echoCA struct {
	securityv1.UnimplementedIstioCertificateServiceServer
}

// CreateCertificate answers with the request's CSR and authorization, or
// the status the CSR names.
func (echoCA) CreateCertificate(ctx context.Context, req *securityv1.IstioCertificateRequest) (*securityv1.IstioCertificateResponse, error) {
	if code, ok := strings.CutPrefix(req.Csr, "fail:"); ok {
		return nil, status.Error(codes.PermissionDenied, code)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return &securityv1.IstioCertificateResponse{CertChain: append([]string{req.Csr}, md.Get("authorization")...)}, nil
}

func startServer(t *testing.T) Target {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	securityv1.RegisterIstioCertificateServiceServer(s, echoCA{})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	tgt, err := ParseTarget(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return tgt
}

const method = "/istio.v1.auth.IstioCertificateService/CreateCertificate"

func call(t *testing.T, tgt Target, method, csr string) (*securityv1.IstioCertificateResponse, error) {
	t.Helper()
	req, err := proto.Marshal(&securityv1.IstioCertificateRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(tgt, nil, Keepalive{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := c.Unary(ctx, method, http.Header{"Authorization": {"Bearer tok"}}, req, 1<<20)
	if err != nil {
		return nil, err
	}
	var resp securityv1.IstioCertificateResponse
	if err := proto.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp, nil
}

// A unary call against grpc-go: the message and metadata arrive, and a
// status the server ends with comes back decoded, message included.
func TestUnaryAgainstGRPCGo(t *testing.T) {
	tgt := startServer(t)
	resp, err := call(t, tgt, method, "csr ✓")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(resp.CertChain, "|"); got != "csr ✓|Bearer tok" {
		t.Errorf("echo %q", got)
	}

	_, err = call(t, tgt, method, "fail:not yours, 100% sure")
	var st *StatusError
	if !errors.As(err, &st) || st.Code != CodePermissionDenied || st.Message != "not yours, 100% sure" {
		t.Fatalf("got %v, want PermissionDenied with the server's message", err)
	}
	if err.Error() != "gRPC status PermissionDenied: not yours, 100% sure" {
		t.Errorf("error text %q", err)
	}

	_, err = call(t, tgt, "/istio.v1.auth.IstioCertificateService/Nope", "")
	if !errors.As(err, &st) || st.Code != CodeUnimplemented {
		t.Errorf("unknown method: %v, want Unimplemented", err)
	}
}

// A server that is not gRPC gets an error saying so.
func TestUnaryAgainstNotGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello"))
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	tgt, _ := ParseTarget(lis.Addr().String())
	if _, err := call(t, tgt, method, "x"); err == nil || !strings.Contains(err.Error(), "not gRPC") {
		t.Errorf("got %v, want a not-gRPC error", err)
	}
}

// NewConnDial's connections come from its dial function, not the
// target's address: a target naming nothing that listens still reaches
// the server the dial function connects to, with the target's authority.
func TestNewConnDialUsesDial(t *testing.T) {
	real := startServer(t)
	dials := 0
	c := NewConnDial(Target{Network: "tcp", Address: "127.0.0.1:1", Authority: "collector.observability:4317"}, nil, Keepalive{},
		func(ctx context.Context) (net.Conn, error) {
			dials++
			var d net.Dialer
			return d.DialContext(ctx, real.Network, real.Address)
		})
	defer c.Close()
	req, err := proto.Marshal(&securityv1.IstioCertificateRequest{Csr: "via dial"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := c.Unary(ctx, method, nil, req, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var resp securityv1.IstioCertificateResponse
	if err := proto.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.CertChain) != 1 || resp.CertChain[0] != "via dial" || dials != 1 {
		t.Errorf("answer %q after %d dials, want the echo after 1", resp.CertChain, dials)
	}
}

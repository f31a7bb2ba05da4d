// Command proxylessapp is a tiny gRPC app for end-to-end tests of
// proxyless gRPC through trellis up (internal/local): grpc-go as users
// write it, reading its xDS bootstrap from GRPC_XDS_BOOTSTRAP.
//
//	proxylessapp serve -port 7070 -version v1 [-xds]
//	proxylessapp call -target xds:///greeter:7070 [-xds-creds] [-n 1]
//
// serve answers grpc.testing.TestService/UnaryCall with its version
// (ServerId), the caller's SPIFFE ID as its TLS handshake proved it
// (Username; empty in plaintext) and the X-Forwarded-Client-Cert a
// sidecar in front of it set (Hostname). With -xds it is an xDS-enabled
// server with xDS credentials (plaintext fallback), as Istio's proxyless
// examples build it; without, a plain grpc-go server (for a sidecar pod).
//
// call makes n calls and prints one JSON line per call: what the server
// answered and the server's SPIFFE ID as the client verified it. It exits
// 1 if any call failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	xdsgrpc "google.golang.org/grpc/xds"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: proxylessapp serve|call [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(serve(os.Args[2:]))
	case "call":
		os.Exit(call(os.Args[2:]))
	}
	fmt.Fprintf(os.Stderr, "proxylessapp: unknown command %q: use serve or call\n", os.Args[1])
	os.Exit(2)
}

type server struct {
	testgrpc.UnimplementedTestServiceServer
	version string
}

func (s *server) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	resp := &testgrpc.SimpleResponse{ServerId: s.version}
	if p, ok := peer.FromContext(ctx); ok {
		resp.Username = spiffeID(p.AuthInfo)
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		resp.Hostname = strings.Join(md.Get("x-forwarded-client-cert"), ",")
	}
	return resp, nil
}

func spiffeID(ai credentials.AuthInfo) string {
	if info, ok := ai.(credentials.TLSInfo); ok && info.SPIFFEID != nil {
		return info.SPIFFEID.String()
	}
	return ""
}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	port := fs.Int("port", 7070, "port to listen on, on every address")
	version := fs.String("version", "v1", "what to answer as ServerId")
	useXDS := fs.Bool("xds", false, "an xDS-enabled server with xDS credentials")
	_ = fs.Parse(args)

	var s interface {
		grpc.ServiceRegistrar
		Serve(net.Listener) error
		GracefulStop()
	}
	if *useXDS {
		creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
		if err != nil {
			fmt.Fprintf(os.Stderr, "xDS server credentials: %v\n", err)
			return 1
		}
		xs, err := xdsgrpc.NewGRPCServer(grpc.Creds(creds), xdsgrpc.ServingModeCallback(func(addr net.Addr, a xdsgrpc.ServingModeChangeArgs) {
			fmt.Fprintf(os.Stderr, "serving mode on %s: %s (%v)\n", addr, a.Mode, a.Err)
		}))
		if err != nil {
			fmt.Fprintf(os.Stderr, "xDS server (is GRPC_XDS_BOOTSTRAP set?): %v\n", err)
			return 1
		}
		s = xs
	} else {
		s = grpc.NewServer()
	}
	testgrpc.RegisterTestServiceServer(s, &server{version: *version})
	lis, err := net.Listen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "listen: %v\n", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() { <-sig; s.GracefulStop() }()
	if err := s.Serve(lis); err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		return 1
	}
	return 0
}

// result is one call's outcome as call prints it.
type result struct {
	ServerVersion string `json:"serverVersion,omitempty"`
	ServerID      string `json:"serverID,omitempty"` // as the client verified it
	CallerID      string `json:"callerID,omitempty"` // as the server's TLS saw it
	XFCC          string `json:"xfcc,omitempty"`     // as a sidecar told the server
	Err           string `json:"err,omitempty"`
}

func call(args []string) int {
	fs := flag.NewFlagSet("call", flag.ExitOnError)
	target := fs.String("target", "", "the target, e.g. xds:///greeter:7070")
	useCreds := fs.Bool("xds-creds", false, "xDS client credentials (plaintext fallback); else plaintext")
	n := fs.Int("n", 1, "calls to make")
	timeout := fs.Duration("timeout", 10*time.Second, "per call")
	_ = fs.Parse(args)

	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if *useCreds {
		c, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
		if err != nil {
			fmt.Fprintf(os.Stderr, "xDS client credentials: %v\n", err)
			return 1
		}
		creds = c
	}
	cc, err := grpc.NewClient(*target, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(os.Stderr, "client for %s: %v\n", *target, err)
		return 1
	}
	defer cc.Close()
	client := testgrpc.NewTestServiceClient(cc)
	out := json.NewEncoder(os.Stdout)
	code := 0
	for range *n {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		var p peer.Peer
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Peer(&p))
		cancel()
		r := result{}
		if err != nil {
			r.Err, code = err.Error(), 1
		} else {
			r = result{ServerVersion: resp.GetServerId(), ServerID: spiffeID(p.AuthInfo), CallerID: resp.GetUsername(), XFCC: resp.GetHostname()}
		}
		_ = out.Encode(r)
	}
	return code
}

package sidecar_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// gRPC calls are reported as request_protocol grpc with their status,
// and the messages each way counted from the length-prefixed frames that
// cross the sidecars (istio_request_messages_total,
// istio_response_messages_total).
func TestIstioGRPCMetrics(t *testing.T) {
	const base = "127.77.243"
	am := newAppMesh(t, base, "", nil)
	ln, err := net.Listen("tcp", base+".2:7070")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &greeter{peers: make(chan string, 8)})
	go srv.Serve(ln)
	defer srv.Stop()
	cc, err := grpc.NewClient("passthrough:///app:7070", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(connectDialer(am.client)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	stream, err := client.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "no"}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("status %v, want FailedPrecondition", err)
	}

	// Per gRPC status: requests, and messages from the client and from
	// the server (the unary OK call 1/1, the client stream 3/1, the
	// failed call 1/0).
	want := map[string]string{"0": "2 4 2", "9": "1 1 0"}
	for _, side := range []struct{ ip, reporter string }{{base + ".1", "source"}, {base + ".2", "destination"}} {
		meshtest.Eventually(t, 5*time.Second, func() string {
			got := map[string][3]float64{}
			for k, v := range scrape(t, side.ip, "istio_requests_total", "istio_request_messages_total", "istio_response_messages_total") {
				if !strings.Contains(k, "request_protocol=grpc") || !strings.Contains(k, "reporter="+side.reporter) || !strings.Contains(k, "destination_service=app.default.svc.cluster.local") {
					continue
				}
				_, rest, _ := strings.Cut(k, "grpc_response_status=")
				code, _, _ := strings.Cut(rest, ",")
				c := got[code]
				switch {
				case strings.HasPrefix(k, "istio_requests_total"):
					c[0] += v
				case strings.HasPrefix(k, "istio_request_messages_total"):
					c[1] += v
				default:
					c[2] += v
				}
				got[code] = c
			}
			var diff []string
			for code, w := range want {
				if g := fmt.Sprintf("%v %v %v", got[code][0], got[code][1], got[code][2]); g != w {
					diff = append(diff, fmt.Sprintf("%s status %s: requests, messages in, out = %s, want %s", side.reporter, code, g, w))
				}
			}
			return strings.Join(diff, "; ")
		})
	}
}

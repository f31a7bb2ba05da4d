package sidecar_test

import (
	"context"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// faultVS injects faults on the app's routes: gRPC calls aborted
// UNAVAILABLE, /abort always 503, /half 503 half the time, /slow held
// 200ms; everything else (the harness's /healthz) untouched.
const faultVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - match: [{port: 7070}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
    route: [{destination: {host: app, port: {number: 7070}}}]
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: app, port: {number: 8080}}}]
  - match: [{uri: {prefix: /half}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: app, port: {number: 8080}}}]
  - match: [{uri: {prefix: /slow}}]
    timeout: 50ms
    fault: {delay: {fixedDelay: 200ms, percentage: {value: 100}}}
    route: [{destination: {host: app, port: {number: 8080}}}]
  - route: [{destination: {host: app}}]
`

// A VirtualService fault is injected by the client's sidecar, as
// Envoy's fault filter does for Istio: aborts are answered without the
// app seeing them, with Envoy's body and the FI flag; a delay holds each
// request its fixed time and, as Istio documents, the route's timeout is
// off beside it; a share is honoured within ±5 points over 2,000
// requests.
func TestFaultInjectionThroughSidecars(t *testing.T) {
	leak.Check(t)
	var seen sync.Map // path → *atomic.Int64
	am := newAppMesh(t, "127.118.1", faultVS, func(w http.ResponseWriter, r *http.Request) {
		n, _ := seen.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		w.Write([]byte("app"))
	})
	seenAt := func(path string) int64 {
		n, ok := seen.Load(path)
		if !ok {
			return 0
		}
		return n.(*atomic.Int64).Load()
	}
	c := am.client.Client()
	defer c.CloseIdleConnections()

	t.Run("Abort", func(t *testing.T) {
		for range 20 {
			resp, body := meshtest.Get(t, c, "http://app:8080/abort", nil)
			if resp.StatusCode != http.StatusServiceUnavailable || strings.TrimSpace(body) != "fault filter abort" {
				t.Fatalf("got %d %q, want 503 \"fault filter abort\"", resp.StatusCode, body)
			}
			if f := resp.Header.Get("X-Trellis-Flags"); f != "FI" {
				t.Errorf("flags %q, want FI", f)
			}
		}
		if n := seenAt("/abort"); n != 0 {
			t.Errorf("the app saw %d aborted requests, want none", n)
		}
	})

	t.Run("HalfAborted", func(t *testing.T) {
		const n = 2000
		aborted := 0
		for range n {
			resp, body := meshtest.Get(t, c, "http://app:8080/half", nil)
			switch {
			case resp.StatusCode == http.StatusServiceUnavailable && strings.TrimSpace(body) == "fault filter abort":
				aborted++
			case resp.StatusCode == http.StatusOK && body == "app":
			default:
				t.Fatalf("got %d %q, want the app's 200 or the fault's 503", resp.StatusCode, body)
			}
		}
		if share := float64(aborted) / n * 100; math.Abs(share-50) > 5 {
			t.Errorf("%.1f%% of %d requests aborted, want 50 ± 5", share, n)
		}
		if got := seenAt("/half"); got != int64(n-aborted) {
			t.Errorf("the app saw %d requests, want the %d not aborted", got, n-aborted)
		}
	})

	t.Run("Delay", func(t *testing.T) {
		for range 5 {
			start := time.Now()
			resp, body := meshtest.Get(t, c, "http://app:8080/slow", nil)
			took := time.Since(start)
			if resp.StatusCode != http.StatusOK || body != "app" {
				t.Fatalf("got %d %q (%s), want the app's 200: the route's 50ms timeout is off beside a fault", resp.StatusCode, body, resp.Header.Get("X-Trellis-Flags"))
			}
			if took < 200*time.Millisecond || took >= time.Second {
				t.Errorf("request took %v, want ≥ 200ms and < 1s", took)
			}
		}
	})

	t.Run("GRPCAbort", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.118.1.2:7070")
		if err != nil {
			t.Fatal(err)
		}
		g := &greeter{peers: make(chan string, 1)}
		srv := grpc.NewServer()
		testpb.RegisterTestServiceServer(srv, g)
		go srv.Serve(ln)
		defer srv.Stop()
		cc, err := grpc.NewClient("passthrough:///app:7070",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(connectDialer(am.client)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{})
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "fault filter abort" {
			t.Errorf("status %v %q, want Unavailable \"fault filter abort\"", st.Code(), st.Message())
		}
		select {
		case p := <-g.peers:
			t.Errorf("the app saw an aborted call from %s", p)
		default:
		}
	})
}

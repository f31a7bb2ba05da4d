package sidecar_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// greeter implements grpc.testing.TestService for the gRPC tests.
type greeter struct {
	testpb.UnimplementedTestServiceServer
	// waiting counts calls that reached the app and wait for their
	// context to end (x-wait); cancelled counts those whose context ended.
	waiting, cancelled atomic.Int64
	// peers are the addresses calls came from.
	peers chan string
}

func (g *greeter) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if p, ok := peer.FromContext(ctx); ok {
		select {
		case g.peers <- p.Addr.String():
		default:
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("x-wait")) > 0 {
		g.waiting.Add(1)
		<-ctx.Done()
		g.cancelled.Add(1)
		return nil, ctx.Err()
	}
	grpc.SetHeader(ctx, metadata.Pairs("x-header", "h-"+strings.Join(md.Get("x-echo"), ",")))
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t-"+strings.Join(md.Get("x-echo"), ","), "x-bin-bin", "\x00\x01\xff"))
	if st := in.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: in.GetPayload().GetBody()}}, nil
}

func (g *greeter) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for i, p := range in.GetResponseParameters() {
		if d := time.Duration(p.GetIntervalUs()) * time.Microsecond; d > 0 {
			select {
			case <-time.After(d):
			case <-s.Context().Done():
				return s.Context().Err()
			}
		}
		body := bytes.Repeat([]byte{byte(i)}, int(p.GetSize()))
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	s.SetTrailer(metadata.Pairs("x-sent", fmt.Sprint(len(in.GetResponseParameters()))))
	return nil
}

func (g *greeter) StreamingInputCall(s grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		in, err := s.Recv()
		if err == io.EOF {
			return s.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(in.GetPayload().GetBody())
	}
}

func (g *greeter) FullDuplexCall(s grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		in, err := s.Recv()
		if err == io.EOF {
			return status.Error(codes.Aborted, "client done")
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// connectDialer makes grpc-go reach addr through the pod's forward proxy
// with CONNECT, as it does for HTTPS_PROXY.
func connectDialer(p *meshtest.Pod) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: p.IP.AsSlice()}}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(p.IP.String(), "15001"))
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

// gRPC crosses two proxies: the client's CONNECT to the forward proxy
// carries h2c, which the proxy serves as HTTP/2 on the grpc- port's
// routes, the tunnel takes it to the app's sidecar and on to the app.
// Unary, server, client and bidi streaming work with headers, trailers,
// status codes and deadlines end to end.
func TestGRPCThroughTwoProxies(t *testing.T) {
	leak.Check(t)
	am := newAppMesh(t, "127.77.11", "", nil)
	ln, err := net.Listen("tcp", "127.77.11.2:7070")
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
	client := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("Unary", func(t *testing.T) {
		var header, trailer metadata.MD
		out, err := client.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-echo", "42"),
			&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}},
			grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if string(out.GetPayload().GetBody()) != "hello" {
			t.Errorf("payload %q", out.GetPayload().GetBody())
		}
		if got := header.Get("x-header"); len(got) != 1 || got[0] != "h-42" {
			t.Errorf("header x-header = %q, want h-42", got)
		}
		if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "t-42" {
			t.Errorf("trailer x-trailer = %q, want t-42", got)
		}
		if got := trailer.Get("x-bin-bin"); len(got) != 1 || got[0] != "\x00\x01\xff" {
			t.Errorf("binary trailer = %q", got)
		}
		select {
		case addr := <-g.peers:
			if host, _, _ := net.SplitHostPort(addr); host != "127.77.11.2" {
				t.Errorf("the app saw the call from %s, want its own sidecar at 127.77.11.2", addr)
			}
		default:
			t.Error("no peer recorded")
		}
	})

	t.Run("StatusAndTrailers", func(t *testing.T) {
		var trailer metadata.MD
		_, err := client.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-echo", "err"),
			&testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not today: ünïcode %"}},
			grpc.Trailer(&trailer))
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition || st.Message() != "not today: ünïcode %" {
			t.Errorf("status = %v %q, want FailedPrecondition with the app's message", st.Code(), st.Message())
		}
		if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "t-err" {
			t.Errorf("trailer with an error status = %q, want t-err", got)
		}
	})

	t.Run("ServerStreaming", func(t *testing.T) {
		req := &testpb.StreamingOutputCallRequest{}
		sizes := []int32{1, 0, 10, 1 << 10, 100 << 10, 1 << 20, 3}
		for _, n := range sizes {
			req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: n})
		}
		s, err := client.StreamingOutputCall(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range sizes {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if b := m.GetPayload().GetBody(); len(b) != int(n) || !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, int(n))) {
				t.Fatalf("message %d: %d bytes, want %d of %d", i, len(b), n, i)
			}
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("after the last message: %v, want EOF", err)
		}
		if got := s.Trailer().Get("x-sent"); len(got) != 1 || got[0] != fmt.Sprint(len(sizes)) {
			t.Errorf("trailer x-sent = %q", got)
		}
	})

	t.Run("ClientStreaming", func(t *testing.T) {
		s, err := client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for i := range 50 {
			body := make([]byte, i*1000)
			total += len(body)
			if err := s.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
				t.Fatal(err)
			}
		}
		out, err := s.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if int(out.GetAggregatedPayloadSize()) != total {
			t.Errorf("the app counted %d bytes, want %d", out.GetAggregatedPayloadSize(), total)
		}
	})

	t.Run("BidiStreaming", func(t *testing.T) {
		s, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Lock-step: each answer must arrive before the next message is
		// sent, so nothing on the way may buffer a stream.
		for i := range 20 {
			msg := fmt.Sprintf("message %d", i)
			if err := s.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
				t.Fatal(err)
			}
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("echo %d: %v", i, err)
			}
			if string(m.GetPayload().GetBody()) != msg {
				t.Fatalf("echo %d = %q", i, m.GetPayload().GetBody())
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		_, err = s.Recv()
		if st := status.Convert(err); st.Code() != codes.Aborted || st.Message() != "client done" {
			t.Errorf("end of bidi stream: %v, want Aborted after the client's half-close", err)
		}
	})

	t.Run("DeadlineExceeded", func(t *testing.T) {
		before := g.cancelled.Load()
		dctx, dcancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-wait", "1"), 300*time.Millisecond)
		defer dcancel()
		_, err := client.UnaryCall(dctx, &testpb.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("call past its deadline: %v, want DeadlineExceeded", err)
		}
		meshtest.Eventually(t, 5*time.Second, func() string {
			if g.cancelled.Load() == before {
				return "the app's call never ended"
			}
			return ""
		})
	})

	t.Run("DeadlineMidStream", func(t *testing.T) {
		// The deadline passes after the response headers and a first
		// message: the stream still ends as DEADLINE_EXCEEDED.
		dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer dcancel()
		s, err := client.StreamingOutputCall(dctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{
			{Size: 10}, {Size: 10, IntervalUs: 10e6},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("first message: %v", err)
		}
		if _, err := s.Recv(); status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("stream past its deadline: %v, want DeadlineExceeded", err)
		}
	})

	t.Run("LocalReplyIsGRPC", func(t *testing.T) {
		// Nothing listens there: the proxy's own 503 UF reaches a gRPC
		// client as a gRPC status it can read, not as text/plain.
		cc, err := grpc.NewClient("passthrough:///127.77.11.2:7071",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(connectDialer(am.client)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		// A trailers-only response: grpc-go gives its headers as trailers.
		var header metadata.MD
		_, err = testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Trailer(&header))
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "upstream connect error") {
			t.Errorf("call to a dead destination: %v, want Unavailable saying upstream connect error", err)
		}
		if got := header.Get("x-trellis-flags"); len(got) != 1 || got[0] != "UF" {
			t.Errorf("flags = %q, want UF", got)
		}
	})

	t.Run("CancelReachesApp", func(t *testing.T) {
		// No deadline: only the client's cancel, carried across both
		// proxies as a stream reset, ends the app's call.
		before, waitingBefore := g.cancelled.Load(), g.waiting.Load()
		cctx, ccancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "x-wait", "1"))
		errc := make(chan error, 1)
		go func() {
			_, err := client.UnaryCall(cctx, &testpb.SimpleRequest{})
			errc <- err
		}()
		// Cancel only once the call is in the app, so the cancel has to
		// cross both proxies rather than stop the call on its way there.
		meshtest.Eventually(t, 5*time.Second, func() string {
			if g.waiting.Load() == waitingBefore {
				return "the call never reached the app"
			}
			return ""
		})
		ccancel()
		if err := <-errc; status.Code(err) != codes.Canceled {
			t.Errorf("cancelled call: %v, want Canceled", err)
		}
		meshtest.Eventually(t, 5*time.Second, func() string {
			if g.cancelled.Load() == before {
				return "the client's cancel never reached the app"
			}
			return ""
		})
	})

	t.Run("Concurrent", func(t *testing.T) {
		errs := make(chan error, 50)
		for i := range 50 {
			go func() {
				body := []byte(fmt.Sprint("call ", i))
				out, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}})
				if err == nil && !bytes.Equal(out.GetPayload().GetBody(), body) {
					err = fmt.Errorf("call %d got %q", i, out.GetPayload().GetBody())
				}
				errs <- err
			}()
		}
		for range 50 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})
}

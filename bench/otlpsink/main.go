// Command otlpsink is the sidecar benchmark's OTLP/gRPC collector: it
// accepts TraceService/Export and discards the spans, logging one line per
// export (its size) so that the benchmark can check the traced sidecars
// really exported. Loopback only; not a collector for anything else.
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The request is decoded as Empty: its fields land in unknown bytes, which
// is all the sink needs (their size), without the OTLP types.
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req emptypb.Empty
			if err := dec(&req); err != nil {
				return nil, err
			}
			slog.Info("export", "bytes", proto.Size(&req))
			return &emptypb.Empty{}, nil
		},
	}},
}

func main() {
	addr := flag.String("listen", "127.0.0.1:4317", "address to serve OTLP/gRPC on (loopback)")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		slog.Error("otlpsink: listen", "err", err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&traceServiceDesc, struct{}{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		srv.Stop()
	}()
	if err := srv.Serve(lis); err != nil {
		slog.Error("otlpsink: serve", "err", err)
		os.Exit(1)
	}
}

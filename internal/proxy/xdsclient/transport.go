package xdsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/grpcwire"
)

// A minimal gRPC client for one bidirectional streaming method, on
// grpcwire (net/http's own HTTP/2 client): grpc-go would cost megabytes
// of RSS for one call.

const (
	adsPath = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
	// Keepalive: ping after this long without a frame from the server,
	// give up on the connection if the ping is not answered in time. The
	// control plane refuses pings more often than every 10s.
	pingAfter   = 30 * time.Second
	pingTimeout = 10 * time.Second
)

// StatusError is how the server ended the stream (its grpc-status and
// grpc-message).
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	if e.Code == 0 {
		return "xDS server closed the stream"
	}
	if e.Message == "" {
		return "xDS server ended the stream: " + grpcwire.CodeName(e.Code)
	}
	return "xDS server ended the stream: " + grpcwire.CodeName(e.Code) + ": " + e.Message
}

// target is where the xDS server listens.
type target = grpcwire.Target

// parseServer accepts "host:port" (TCP) and "unix:///path" (or
// "unix:/path", grpc-go's forms) for local mode's Unix sockets.
func parseServer(s string) (target, error) {
	t, err := grpcwire.ParseTarget(s)
	if err != nil {
		return target{}, fmt.Errorf("xDS server %w", err)
	}
	return t, nil
}

// stream is one open DeltaAggregatedResources call. Send from one
// goroutine; receive from msgs until done is closed, then err says why.
type stream struct {
	pw     *io.PipeWriter
	msgs   chan []byte
	done   chan struct{}
	err    error // set before done is closed
	cancel context.CancelFunc
	conn   *grpcwire.Conn
}

// openStream starts the call, over TLS when tlsConf is set (h2c
// otherwise). The request headers go out with the first message; the
// server's response headers are awaited by the reader goroutine, so a
// server that answers only after the first request does not deadlock the
// caller.
func openStream(ctx context.Context, t target, tlsConf *tls.Config, maxRecv int) *stream {
	conn := grpcwire.NewConn(t, tlsConf, grpcwire.Keepalive{Every: pingAfter, Timeout: pingTimeout})
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	req, err := conn.NewRequest(ctx, adsPath, pr)
	s := &stream{pw: pw, msgs: make(chan []byte), done: make(chan struct{}), cancel: cancel, conn: conn}
	if err != nil { // only a malformed authority gets here
		s.err = fmt.Errorf("xDS server address: %w", err)
		pr.CloseWithError(s.err)
		close(s.done)
		return s
	}
	go func() {
		err := s.read(ctx, req, maxRecv)
		s.err = err
		// Unblocks a Send waiting on a stream that is gone.
		pr.CloseWithError(err)
		close(s.done)
	}()
	return s
}

// send writes one length-prefixed message.
func (s *stream) send(msg []byte) error {
	if _, err := s.pw.Write(grpcwire.Frame(msg)); err != nil {
		select {
		case <-s.done:
			return s.err
		default:
			return fmt.Errorf("sending to the xDS server: %w", err)
		}
	}
	return nil
}

// close ends the call and waits for its reader; the connection is closed
// too, so nothing outlives the stream.
func (s *stream) close() {
	s.cancel()
	s.pw.CloseWithError(errors.New("xDS stream closed"))
	<-s.done
	s.conn.Close()
}

func (s *stream) read(ctx context.Context, req *http.Request, maxRecv int) error {
	t := s.conn.Target()
	resp, err := s.conn.RoundTrip(req)
	if err != nil {
		var st *grpcwire.StatusError
		if errors.As(err, &st) {
			return &StatusError{Code: st.Code, Message: st.Message}
		}
		return fmt.Errorf("xDS server: %w", err)
	}
	defer resp.Body.Close()
	for {
		msg, err := readMessage(resp.Body, maxRecv)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading from the xDS server at %s: %w", t.Address, err)
		}
		select {
		case s.msgs <- msg:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if st := grpcwire.Status(resp.Trailer); st != nil {
		return &StatusError{Code: st.Code, Message: st.Message}
	}
	return fmt.Errorf("xDS server at %s ended the stream without a gRPC status", t.Address)
}

// readMessage reads one gRPC length-prefixed message, naming the setting
// that bounds it when it is too large.
func readMessage(r io.Reader, maxRecv int) ([]byte, error) {
	msg, err := grpcwire.ReadMessage(r, maxRecv)
	if big := (*grpcwire.TooLargeError)(nil); errors.As(err, &big) {
		return nil, fmt.Errorf("%w (raise Config.MaxRecvMsgSize)", err)
	}
	return msg, err
}

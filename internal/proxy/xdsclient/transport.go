package xdsclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A minimal gRPC client for one bidirectional streaming method, over
// net/http's own HTTP/2 client with prior knowledge (h2c). grpc-go would
// cost megabytes of RSS for one call; net/http is linked by the proxy
// anyway, and since Go 1.24 it speaks unencrypted HTTP/2 itself, so not
// even golang.org/x/net/http2 (a second copy of the same code) is needed.

const (
	adsPath   = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
	userAgent = "trellis-proxy"
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
	name := codeNames[e.Code]
	if name == "" {
		name = "code " + strconv.Itoa(e.Code)
	}
	if e.Code == 0 {
		return "xDS server closed the stream"
	}
	if e.Message == "" {
		return "xDS server ended the stream: " + name
	}
	return "xDS server ended the stream: " + name + ": " + e.Message
}

var codeNames = map[int]string{
	1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded", 5: "NotFound",
	6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted", 9: "FailedPrecondition",
	10: "Aborted", 11: "OutOfRange", 12: "Unimplemented", 13: "Internal", 14: "Unavailable",
	15: "DataLoss", 16: "Unauthenticated",
}

// target is where the xDS server listens.
type target struct {
	network, address string
	authority        string // :authority of requests
}

// parseServer accepts "host:port" (TCP) and "unix:///path" (or
// "unix:/path", grpc-go's forms) for local mode's Unix sockets.
func parseServer(s string) (target, error) {
	if rest, ok := strings.CutPrefix(s, "unix:"); ok {
		path := strings.TrimPrefix(rest, "//")
		if path == "" || path[0] != '/' {
			return target{}, fmt.Errorf("xDS server %q: a Unix socket needs an absolute path, as unix:///run/trellis/xds.sock", s)
		}
		return target{network: "unix", address: path, authority: "localhost"}, nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return target{}, fmt.Errorf("xDS server %q: want host:port (e.g. 127.0.0.1:15010) or unix:///path: %w", s, err)
	}
	return target{network: "tcp", address: s, authority: s}, nil
}

// stream is one open DeltaAggregatedResources call. Send from one
// goroutine; receive from msgs until done is closed, then err says why.
type stream struct {
	pw     *io.PipeWriter
	msgs   chan []byte
	done   chan struct{}
	err    error // set before done is closed
	cancel context.CancelFunc
	tr     *http.Transport
}

// openStream starts the call. The request headers go out with the first
// message; the server's response headers are awaited by the reader
// goroutine, so a server that answers only after the first request does
// not deadlock the caller.
func openStream(ctx context.Context, t target, maxRecv int) *stream {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: protocols,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, t.network, t.address)
		},
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: pingAfter,
			PingTimeout:     pingTimeout,
		},
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.authority+adsPath, pr)
	s := &stream{pw: pw, msgs: make(chan []byte), done: make(chan struct{}), cancel: cancel, tr: tr}
	if err != nil { // only a malformed authority gets here
		s.err = fmt.Errorf("xDS server address %q: %w", t.authority, err)
		pr.CloseWithError(s.err)
		close(s.done)
		return s
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", userAgent)
	go func() {
		err := s.read(ctx, tr, req, t, maxRecv)
		s.err = err
		// Unblocks a Send waiting on a stream that is gone.
		pr.CloseWithError(err)
		close(s.done)
	}()
	return s
}

// send writes one length-prefixed message.
func (s *stream) send(msg []byte) error {
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	if _, err := s.pw.Write(frame); err != nil {
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
	s.tr.CloseIdleConnections()
}

func (s *stream) read(ctx context.Context, tr *http.Transport, req *http.Request, t target, maxRecv int) error {
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("cannot reach the xDS server at %s: %w", t.address, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("xDS server at %s answered HTTP %s, not gRPC: check the address points at the control plane's xDS port", t.address, resp.Status)
	}
	// A "trailers-only" answer (an immediate error) carries the status in
	// the headers.
	if st := grpcStatus(resp.Header); st != nil {
		return st
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return fmt.Errorf("xDS server at %s answered with content-type %q, not gRPC: check the address points at the control plane's xDS port", t.address, ct)
	}
	for {
		msg, err := readMessage(resp.Body, maxRecv)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading from the xDS server at %s: %w", t.address, err)
		}
		select {
		case s.msgs <- msg:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if st := grpcStatus(resp.Trailer); st != nil {
		return st
	}
	return fmt.Errorf("xDS server at %s ended the stream without a gRPC status", t.address)
}

// readMessage reads one gRPC length-prefixed message. Each message gets a
// fresh buffer: decoded resources may alias it.
func readMessage(r io.Reader, maxRecv int) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err // io.EOF only at a message boundary
	}
	if hdr[0] != 0 {
		// Compression was never offered (no grpc-accept-encoding).
		return nil, fmt.Errorf("server sent a compressed message (flag %d) although none was negotiated", hdr[0])
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if uint64(n) > uint64(maxRecv) {
		return nil, fmt.Errorf("message of %d bytes exceeds the %d-byte limit (Config.MaxRecvMsgSize)", n, maxRecv)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading a %d-byte message: %w", n, err)
	}
	return buf, nil
}

// grpcStatus reads grpc-status/grpc-message, or nil when absent.
func grpcStatus(h http.Header) *StatusError {
	v := h.Get("Grpc-Status")
	if v == "" {
		return nil
	}
	code, err := strconv.Atoi(v)
	if err != nil {
		code = 2 // Unknown, as grpc-go does for a malformed status
	}
	msg := h.Get("Grpc-Message")
	// grpc-message is percent-encoded; keep it raw if it is not.
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	return &StatusError{Code: code, Message: msg}
}

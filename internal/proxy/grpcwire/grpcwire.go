// Package grpcwire is the proxy's own gRPC client wire layer: target
// addresses, HTTP/2 transports (h2c, or TLS when given a config),
// length-prefixed messages and grpc-status trailers, over net/http.
// grpc-go would cost the sidecar megabytes of RSS for the two calls it
// makes (the ADS stream and the CA's CreateCertificate); net/http is
// linked anyway and, since Go 1.24, speaks unencrypted HTTP/2 itself.
package grpcwire

import (
	"bytes"
	"context"
	"crypto/tls"
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

// UserAgent is sent with every call.
const UserAgent = "trellis-proxy"

// Target is where a gRPC server listens.
type Target struct {
	Network, Address string
	Authority        string // :authority of requests, and the TLS server name
}

// ParseTarget accepts "host:port" (TCP) and "unix:///path" (or
// "unix:/path", grpc-go's forms) for local mode's Unix sockets.
func ParseTarget(s string) (Target, error) {
	if rest, ok := strings.CutPrefix(s, "unix:"); ok {
		path := strings.TrimPrefix(rest, "//")
		if path == "" || path[0] != '/' {
			return Target{}, fmt.Errorf("%q: a Unix socket needs an absolute path, as unix:///run/trellis/xds.sock", s)
		}
		return Target{Network: "unix", Address: path, Authority: "localhost"}, nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return Target{}, fmt.Errorf("%q: want host:port (e.g. 127.0.0.1:15010) or unix:///path: %w", s, err)
	}
	return Target{Network: "tcp", Address: s, Authority: s}, nil
}

// Keepalive pings a connection after Every without a frame from the
// server and gives it up when the ping is not answered within Timeout.
type Keepalive struct {
	Every, Timeout time.Duration
}

// Conn is a client for the gRPC server at one Target. Its connections
// are made on demand and reused.
type Conn struct {
	t      Target
	scheme string
	tr     *http.Transport
}

// NewConn returns a client for t: plaintext HTTP/2 with prior knowledge
// (h2c) when tlsConf is nil, HTTP/2 over TLS (ALPN h2) otherwise.
// tlsConf's ServerName defaults to t's host ("localhost" for a Unix
// socket). ka, when non-zero, keeps idle streams checked.
func NewConn(t Target, tlsConf *tls.Config, ka Keepalive) *Conn {
	return NewConnDial(t, tlsConf, ka, nil)
}

// NewConnDial is NewConn with the connections made by dial instead of
// t.Network and t.Address (nil: those), for a server reached some other
// way, such as a collector behind one of the proxy's clusters; t.Address
// still names it in errors.
func NewConnDial(t Target, tlsConf *tls.Config, ka Keepalive, dial func(context.Context) (net.Conn, error)) *Conn {
	if dial == nil {
		dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, t.Network, t.Address)
		}
	}
	protocols := new(http.Protocols)
	scheme := "http"
	if tlsConf == nil {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP2(true)
		scheme = "https"
		tlsConf = tlsConf.Clone()
		if tlsConf.ServerName == "" {
			host := t.Authority
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			tlsConf.ServerName = host
		}
	}
	tr := &http.Transport{
		Protocols:       protocols,
		TLSClientConfig: tlsConf,
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: ka.Every,
			PingTimeout:     ka.Timeout,
		},
	}
	return &Conn{t: t, scheme: scheme, tr: tr}
}

// Target is where c calls.
func (c *Conn) Target() Target { return c.t }

// Close closes c's idle connections; calls in flight end with their
// contexts.
func (c *Conn) Close() { c.tr.CloseIdleConnections() }

// NewRequest is a call of method ("/package.Service/Method") whose
// request messages, framed by Frame, are read from body.
func (c *Conn) NewRequest(ctx context.Context, method string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+"://"+c.t.Authority+method, body)
	if err != nil {
		return nil, fmt.Errorf("gRPC server address %q: %w", c.t.Authority, err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", UserAgent)
	return req, nil
}

// RoundTrip sends req and checks that the answer is gRPC: an HTTP error
// or a non-gRPC content type is an error, and so is a "trailers-only"
// answer (an immediate gRPC error, its status in the headers), returned
// as a *StatusError. On success the caller reads resp.Body.
func (c *Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.t.Address, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s answered HTTP %s, not gRPC: check the address points at the control plane's gRPC port", c.t.Address, resp.Status)
	}
	if st := Status(resp.Header); st != nil {
		resp.Body.Close()
		return nil, st
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		resp.Body.Close()
		return nil, fmt.Errorf("%s answered with content-type %q, not gRPC: check the address points at the control plane's gRPC port", c.t.Address, ct)
	}
	return resp, nil
}

// Unary makes one unary call: msg is the encoded request, md extra
// request metadata (e.g. authorization); it returns the encoded response,
// or the server's status as a *StatusError.
func (c *Conn) Unary(ctx context.Context, method string, md http.Header, msg []byte, maxRecv int) ([]byte, error) {
	req, err := c.NewRequest(ctx, method, bytes.NewReader(Frame(msg)))
	if err != nil {
		return nil, err
	}
	for k, vs := range md {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := ReadMessage(resp.Body, maxRecv)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the answer of %s: %w", method, err)
	}
	gotMsg := err == nil
	if gotMsg {
		// The status comes after the body; a second message is a
		// protocol error for a unary call.
		if _, err := ReadMessage(resp.Body, maxRecv); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the answer of %s: the server sent more than one message to a unary call", method)
		}
	}
	st := Status(resp.Trailer)
	switch {
	case st == nil:
		return nil, fmt.Errorf("%s: the server ended the call without a gRPC status", method)
	case st.Code != 0:
		return nil, st
	case !gotMsg:
		return nil, fmt.Errorf("%s: the server answered OK without a message", method)
	}
	return out, nil
}

// Frame returns msg as one length-prefixed, uncompressed gRPC message.
func Frame(msg []byte) []byte {
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	return frame
}

// TooLargeError is a message over the receiver's limit.
type TooLargeError struct{ Size, Limit uint64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("message of %d bytes exceeds the %d-byte limit", e.Size, e.Limit)
}

// ReadMessage reads one length-prefixed message of at most maxRecv
// bytes; io.EOF only at a message boundary. Each message gets a fresh
// buffer: decoded values may alias it.
func ReadMessage(r io.Reader, maxRecv int) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	if hdr[0] != 0 {
		// Compression is never offered (no grpc-accept-encoding).
		return nil, fmt.Errorf("server sent a compressed message (flag %d) although none was negotiated", hdr[0])
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if uint64(n) > uint64(maxRecv) {
		return nil, &TooLargeError{Size: uint64(n), Limit: uint64(maxRecv)}
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

// gRPC status codes the proxy tells apart.
const (
	CodeOK               = 0
	CodeInvalidArgument  = 3
	CodePermissionDenied = 7
	CodeUnimplemented    = 12
	CodeUnavailable      = 14
	CodeUnauthenticated  = 16
)

// StatusError is a gRPC status other than OK: the server's grpc-status
// and grpc-message.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return "gRPC status " + CodeName(e.Code)
	}
	return "gRPC status " + CodeName(e.Code) + ": " + e.Message
}

// CodeName is a status code's name, as grpc-go spells it.
func CodeName(code int) string {
	if name := codeNames[code]; name != "" {
		return name
	}
	return "code " + strconv.Itoa(code)
}

var codeNames = map[int]string{
	0: "OK", 1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded", 5: "NotFound",
	6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted", 9: "FailedPrecondition",
	10: "Aborted", 11: "OutOfRange", 12: "Unimplemented", 13: "Internal", 14: "Unavailable",
	15: "DataLoss", 16: "Unauthenticated",
}

// Status reads grpc-status and grpc-message from h, or nil when absent.
func Status(h http.Header) *StatusError {
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

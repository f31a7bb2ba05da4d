package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/netio"
)

// The tunnel port also takes HTTP/1.1 CONNECT, one tunnel per TCP
// connection, which Envoy's tunneling_config speaks as well. After the
// 200 the connection is the raw byte stream: no framing, no flow control,
// no goroutine between the peers, half-close by TCP FIN, and the kernel's
// splice for TCP payloads. That is what sidecars use for their pooled,
// long-lived upstream connections, where HTTP/2's multiplexing buys
// nothing but costs a frame layer and several goroutine hand-offs per
// request (see docs/performance.md, "Sidecar"). HTTP/2 CONNECT (HBONE)
// stays served on the same port for peers that multiplex.

// maxHeadBytes bounds an HTTP/1.1 CONNECT request or response head.
const maxHeadBytes = 16 << 10

var connectPrefix = []byte("CONNECT ")

// DialHTTP1 opens a tunnel to target through the tunnel server at tunnel
// over its own TCP connection (HTTP/1.1 CONNECT), from d.Source, inside
// TLS when d.TLSConfig is set. ctx bounds the dial, the handshake and the
// server's answer. The returned conn is the tunnel: reads and writes go to
// the target, CloseWrite half-closes it.
func (d *Dialer) DialHTTP1(ctx context.Context, tunnel netip.AddrPort, target string, header http.Header) (net.Conn, error) {
	return d.DialHTTP1TLS(ctx, tunnel, target, header, d.TLSConfig)
}

// DialHTTP1TLS is DialHTTP1 inside TLS with cfg, or plaintext when cfg is
// nil: mesh mTLS passes a config that checks this destination's expected
// SPIFFE IDs (certs.ClientConfig), which differ from peer to peer. A
// refusal of the handshake, by either side, is an error; the server's
// refusal of our certificate shows when its CONNECT answer is read (TLS
// 1.3 clients finish before the server has checked them).
func (d *Dialer) DialHTTP1TLS(ctx context.Context, tunnel netip.AddrPort, target string, header http.Header, cfg *tls.Config) (net.Conn, error) {
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, positive(d.DialTimeout, DefaultDialTimeout))
	defer cancel()
	c, err := d.dialTCP(dctx, "tcp", tunnel.String())
	if err != nil {
		return nil, fmt.Errorf("tunnel %s: %w", tunnel, err)
	}
	if cfg != nil {
		if !cfg.DynamicRecordSizingDisabled {
			// Full-size records (see Server's config): a pooled tunnel
			// carries requests, not a web page's first bytes.
			cfg = cfg.Clone()
			cfg.DynamicRecordSizingDisabled = true
		}
		// crypto/tls runs on raw system calls, as plaintext tunnels do
		// (netio.ForTLS): a tunnel's records then cost what its bytes
		// would, and the hot path's Serve and WriteAwait work through it.
		tc := tls.Client(netio.ForTLS(c), cfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			d.handshakeFailures.Add(1)
			c.Close()
			return nil, fmt.Errorf("tunnel %s: TLS handshake: %w", tunnel, err)
		}
		d.handshakes.Add(1)
		c = netio.WrapTLS(tc)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	br, err := connectHTTP1(c, target, header)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		c.Close()
		var se *StatusError
		if errors.As(err, &se) {
			se.Tunnel = tunnel.String()
			return nil, se
		}
		return nil, fmt.Errorf("tunnel %s to %s: %w", tunnel, target, err)
	}
	c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// The server spoke first after its 200; keep those bytes.
		b, _ := br.Peek(br.Buffered())
		return netio.Replay(c, bytes.Clone(b)), nil
	}
	return c, nil
}

func connectHTTP1(c net.Conn, target string, header http.Header) (*bufio.Reader, error) {
	var b bytes.Buffer
	b.WriteString("CONNECT ")
	b.WriteString(target)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(target)
	b.WriteString("\r\n")
	header.Write(&b)
	b.WriteString("\r\n")
	if _, err := c.Write(b.Bytes()); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(io.LimitReader(c, maxHeadBytes), 512)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, fmt.Errorf("reading the CONNECT answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, &StatusError{Target: target, Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	// LimitReader only bounded the head; what the bufio.Reader holds past
	// it belongs to the stream and the rest is read from c directly.
	return br, nil
}

// ServeConn serves one accepted tunnel-port connection: an HTTP/1.1
// CONNECT is answered here and, when Handle is set, the connection itself
// is handed to it as the tunnel; anything else goes to the HTTP/2 server
// (HBONE). It returns when the connection is done with, and closes it.
// HTTP/1.1 tunnels are not counted by Shutdown: the caller, which accepted
// the connection, tracks and if need be closes it.
func (s *Server) ServeConn(c net.Conn) {
	s.init()
	deadline := time.Now().Add(positive(s.ReadHeaderTimeout, DefaultReadHeaderTimeout))
	if err := c.SetReadDeadline(deadline); err != nil {
		c.Close()
		return
	}
	var state *tls.ConnectionState
	if s.connTLS != nil {
		// TLS only: plaintext fails the handshake and is closed.
		c.SetWriteDeadline(deadline)
		tc := tls.Server(netio.ForTLS(c), s.connTLS) // raw I/O, as DialHTTP1TLS
		if err := tc.Handshake(); err != nil {
			s.handshakeFailures.Add(1)
			s.logger().Debug("tunnel connection refused: TLS handshake failed", "peer", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
		s.handshakes.Add(1)
		c.SetWriteDeadline(time.Time{})
		st := tc.ConnectionState()
		state = &st
		c = netio.WrapTLS(tc)
		if st.NegotiatedProtocol == "h2" {
			c.SetReadDeadline(time.Time{})
			s.serveH2(c, nil, state)
			return
		}
	}
	br := bufio.NewReaderSize(c, 1024)
	first, err := br.Peek(len(connectPrefix))
	if err != nil || !bytes.Equal(first, connectPrefix) {
		// HTTP/2 (or garbage, which the HTTP/2 server refuses).
		c.SetReadDeadline(time.Time{})
		s.serveH2(c, peeked(br), state)
		return
	}
	defer c.Close()
	head := bufio.NewReader(io.LimitReader(br, maxHeadBytes))
	req, err := http.ReadRequest(head)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return
	}
	c.SetReadDeadline(time.Time{})
	peer := Peer{Addr: addrPort(c.RemoteAddr()), Local: addrPort(c.LocalAddr()), TLS: state, Header: req.Header}
	target, status, msg := s.check(req.Host, peer)
	if status != http.StatusOK {
		reply(c, status, msg)
		return
	}
	stream := net.Conn(c)
	// The client may send stream bytes right behind its CONNECT: the head
	// reader read ahead into them from br, which may hold more.
	if ahead := append(peeked(head), peeked(br)...); len(ahead) > 0 {
		stream = netio.Replay(c, ahead)
	}
	if s.Handle != nil {
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n"); err != nil {
			return
		}
		s.Handle(target, peer, stream)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), positive(s.AppDialTimeout, DefaultAppDialTimeout))
	app, err := s.dialApp(ctx, target, peer)
	cancel()
	if err != nil {
		reply(c, http.StatusServiceUnavailable, fmt.Sprintf("tunnel: app at %s: %v", target, err))
		return
	}
	defer app.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(app, stream)
		closeWrite(app)
	}()
	io.Copy(stream, app)
	closeWrite(c)
	<-done
}

func peeked(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

func reply(c net.Conn, status int, msg string) {
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(msg), msg)
}

// check parses and authorizes a CONNECT authority, as serveStream does.
func (s *Server) check(authority string, peer Peer) (netip.AddrPort, int, string) {
	target, err := netip.ParseAddrPort(authority)
	if err != nil || target.Port() == 0 {
		return target, http.StatusBadRequest, fmt.Sprintf("tunnel: authority %q is not ip:port", authority)
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	authorize := s.Authorize
	if authorize == nil {
		authorize = ownAddress
	}
	if err := authorize(target, peer); err != nil {
		return target, http.StatusForbidden, fmt.Sprintf("tunnel: %s may not reach %s: %v", peer.Addr, target, err)
	}
	return target, http.StatusOK, ""
}

// serveH2 hands a connection to the HTTP/2 server and waits until the
// server closed it.
// state is the TLS ServeConn terminated, if any: the HTTP/2 server sees
// the decrypted stream as prior-knowledge HTTP/2 and takes the peer's
// certificate from here.
func (s *Server) serveH2(c net.Conn, prefix []byte, state *tls.ConnectionState) {
	s.h2once.Do(func() {
		s.h2ln = newConnListener()
		go s.hs.Serve(s.h2ln)
	})
	nc := &notifyConn{Conn: netio.Replay(c, prefix), raw: c, tls: state, done: make(chan struct{})}
	s.h2ln.push(nc)
	<-nc.done
}

// notifyConn says when the HTTP/2 server closed it.
type notifyConn struct {
	net.Conn
	raw  net.Conn
	tls  *tls.ConnectionState
	once sync.Once
	done chan struct{}
}

func (n *notifyConn) Close() error {
	err := n.raw.Close()
	n.once.Do(func() { close(n.done) })
	return err
}

// connListener feeds connections accepted elsewhere to the HTTP/2 server.
type connListener struct {
	ch     chan net.Conn
	closed chan struct{}
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{} }

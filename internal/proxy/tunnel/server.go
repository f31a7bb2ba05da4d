package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the Server's zero fields.
const (
	DefaultMaxConcurrentStreams = 100
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultServerIdleTimeout    = 5 * time.Minute
	DefaultAppDialTimeout       = 5 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("tunnel: server closed")

// Peer is who asked for a tunnel.
type Peer struct {
	Addr   netip.AddrPort       // the tunnel connection's source: the calling pod's IP
	Local  netip.AddrPort       // where it arrived: this pod's IP and tunnel port
	TLS    *tls.ConnectionState // nil in plaintext; under mTLS, the peer's verified certificate
	Header http.Header          // the CONNECT's headers (baggage, forwarded identity)
}

// A Server answers HTTP/2 CONNECT streams on the tunnel port by connecting
// them to the local app. Set fields before Serve.
type Server struct {
	// Authorize refuses a target (403). Nil allows only targets on the IP
	// the connection arrived on (this pod's), at any port but the tunnel
	// port itself.
	Authorize func(target netip.AddrPort, peer Peer) error
	// Dial connects to the app. Nil dials target from target's own IP
	// (the pod IP), so the app sees its sidecar's address, never a
	// loopback or node address. A failure answers 503.
	Dial func(ctx context.Context, target netip.AddrPort) (net.Conn, error)
	// TLSConfig, when set, serves TLS only (certs.ServerConfig: mTLS with
	// the proxy's identity); a connection that does not complete the
	// handshake, plaintext included, is closed and counted. nil serves
	// plaintext: HTTP/1.1 CONNECT and h2c with prior knowledge.
	TLSConfig *tls.Config
	// MaxConcurrentStreams bounds tunnels per connection; clients open
	// another connection beyond it. Default DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// ReadHeaderTimeout bounds the time from accepting a connection to its
	// first CONNECT (and the TLS handshake), so silent connections cannot
	// pile up. Default DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes (with GOAWAY) a connection that has carried no
	// tunnel for this long. Default DefaultServerIdleTimeout.
	IdleTimeout time.Duration
	// Handle, when set, takes over HTTP/1.1 CONNECT tunnels (see
	// ServeConn): after the 200 it gets the connection itself, already
	// authorised, and serves target on it until it returns. nil dials the
	// app with Dial and copies, as for HTTP/2 streams.
	Handle func(target netip.AddrPort, peer Peer, c net.Conn)
	// DialPeer, when set, replaces Dial and also gets the peer, so the
	// app side can know who called (its verified identity under mTLS).
	DialPeer func(ctx context.Context, target netip.AddrPort, peer Peer) (net.Conn, error)
	// AppDialTimeout bounds Dial. Default DefaultAppDialTimeout.
	AppDialTimeout time.Duration
	// Log receives connection-level failures; nil discards them.
	Log *slog.Logger

	initOnce sync.Once
	hs       *http.Server
	connTLS  *tls.Config // TLSConfig as ServeConn hands it to crypto/tls

	handshakes, handshakeFailures atomic.Uint64
	h2once                        sync.Once
	h2ln                          *connListener // HTTP/2 connections ServeConn passes on

	mu      sync.Mutex
	handled sync.Cond // broadcast when handlers drops to 0
	streams int       // handlers running
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		// ServeConn terminates TLS itself and hands the HTTP/2 server the
		// decrypted stream, which it serves as HTTP/2 with prior
		// knowledge; Serve's listener gets HTTP/2 by ALPN.
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		if s.TLSConfig != nil {
			protos.SetHTTP2(true)
			s.connTLS = s.TLSConfig.Clone()
			if len(s.connTLS.NextProtos) == 0 {
				s.connTLS.NextProtos = []string{"h2", "http/1.1"}
			}
			// Tunnel connections are pooled and long-lived; a ticket per
			// handshake would be bytes and CPU no client uses.
			s.connTLS.SessionTicketsDisabled = true
			// Full-size records from the start: dynamic sizing favours a
			// web page's first bytes and, for a connection's first 128
			// KB, costs a record and a write per ~1.2 KB.
			s.connTLS.DynamicRecordSizingDisabled = true
		}
		logLevel := slog.LevelDebug // client misbehaviour is not ours to shout about
		s.hs = &http.Server{
			Handler:   http.HandlerFunc(s.serveStream),
			Protocols: &protos,
			TLSConfig: s.TLSConfig,
			// Covers the connection preface (and TLS handshake); after it
			// the HTTP/2 idle timeout and health pings govern the
			// connection, as the tunnels on it may live for hours.
			ReadHeaderTimeout: positive(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
			IdleTimeout:       positive(s.IdleTimeout, DefaultServerIdleTimeout),
			HTTP2: &http.HTTP2Config{
				MaxConcurrentStreams: positiveInt(int(s.MaxConcurrentStreams), DefaultMaxConcurrentStreams),
				// Windows sized for bulk transfer: a stream may have 1 MiB
				// in flight and a connection 4 MiB, which also bounds the
				// memory one slow app can pin.
				MaxReceiveBufferPerStream:     1 << 20,
				MaxReceiveBufferPerConnection: 4 << 20,
				MaxReadFrameSize:              64 << 10,
			},
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				ci := &connInfo{peer: addrPort(c.RemoteAddr()), local: addrPort(c.LocalAddr())}
				if nc, ok := c.(*notifyConn); ok {
					ci.tls = nc.tls
				}
				return context.WithValue(ctx, connInfoKey{}, ci)
			},
			ErrorLog: slog.NewLogLogger(s.logger().Handler(), logLevel),
		}
		s.handled.L = &s.mu
	})
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Serve accepts tunnel connections on l until Shutdown or Close, which
// make it return ErrServerClosed. It closes l.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	var err error
	if s.TLSConfig != nil {
		err = s.hs.ServeTLS(l, "", "")
	} else {
		err = s.hs.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// connInfo is what a stream's handler needs of its connection; it reaches
// the handler through the request context.
type connInfo struct {
	peer, local netip.AddrPort
	tls         *tls.ConnectionState // terminated by ServeConn; r.TLS is nil then
}

type connInfoKey struct{}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (s *Server) serveStream(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.streams++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.streams--; s.streams == 0 {
			s.handled.Broadcast()
		}
		s.mu.Unlock()
	}()

	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	if ci == nil {
		http.Error(w, "tunnel: no connection", http.StatusInternalServerError)
		return
	}
	if r.Method != http.MethodConnect {
		http.Error(w, "tunnel: only CONNECT is served here", http.StatusBadRequest)
		return
	}
	target, err := netip.ParseAddrPort(r.Host)
	if err != nil || target.Port() == 0 {
		http.Error(w, fmt.Sprintf("tunnel: authority %q is not ip:port", r.Host), http.StatusBadRequest)
		return
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	peer := Peer{Addr: ci.peer, Local: ci.local, TLS: r.TLS, Header: r.Header}
	if peer.TLS == nil {
		peer.TLS = ci.tls
	}
	authorize := s.Authorize
	if authorize == nil {
		authorize = ownAddress
	}
	if err := authorize(target, peer); err != nil {
		http.Error(w, fmt.Sprintf("tunnel: %s may not reach %s: %v", peer.Addr, target, err), http.StatusForbidden)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), positive(s.AppDialTimeout, DefaultAppDialTimeout))
	app, err := s.dialApp(ctx, target, peer)
	cancel()
	if err != nil {
		http.Error(w, fmt.Sprintf("tunnel: app at %s: %v", target, err), http.StatusServiceUnavailable)
		return
	}
	defer app.Close()
	// A reset stream or a closed connection cancels the request context;
	// closing the app then unblocks both copies.
	stop := context.AfterFunc(r.Context(), func() { app.Close() })
	defer stop()

	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl == nil {
		return // net/http's HTTP/2 ResponseWriter always flushes
	}
	fl.Flush()

	up := make(chan struct{})
	go func() {
		defer close(up)
		_, err := copyBuffer(app, r.Body)
		if err == nil {
			closeWrite(app)
		}
	}()
	copyBuffer(flushWriter{w, fl}, app)
	// The app closed (or failed). The response can only end with the
	// handler, and HTTP/2 then resets a request stream still open, so the
	// client sees EOF and any further upload fails: a close-delimited
	// answer must reach the client even if it never half-closes. An upload
	// still running is cut here.
	r.Body.Close()
	<-up
}

func (s *Server) dialApp(ctx context.Context, target netip.AddrPort, peer Peer) (net.Conn, error) {
	switch {
	case s.DialPeer != nil:
		return s.DialPeer(ctx, target, peer)
	case s.Dial != nil:
		return s.Dial(ctx, target)
	}
	return dialFromTarget(ctx, target)
}

// Stats are the server's TLS counters.
type Stats struct {
	// Handshakes completed, and refused: a failed handshake, a peer
	// without a valid certificate or of the wrong identity, or plaintext
	// on a TLS-only port.
	Handshakes, HandshakeFailures uint64
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{Handshakes: s.handshakes.Load(), HandshakeFailures: s.handshakeFailures.Load()}
}

func ownAddress(target netip.AddrPort, peer Peer) error {
	if target.Addr() != peer.Local.Addr() {
		return fmt.Errorf("%s is not this pod's address %s", target.Addr(), peer.Local.Addr())
	}
	if target.Port() == peer.Local.Port() {
		return errors.New("the tunnel port cannot be tunnelled to")
	}
	return nil
}

func dialFromTarget(ctx context.Context, target netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(target.Addr(), 0)), Control: bindNoPort}
	return d.DialContext(ctx, "tcp", target.String())
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// flushWriter sends each chunk as it comes: a tunnel carries interactive
// protocols, so nothing may wait in a buffer for more bytes.
type flushWriter struct {
	w  io.Writer
	fl http.Flusher
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		f.fl.Flush()
	}
	return n, err
}

// Shutdown stops accepting, sends GOAWAY on every connection and waits
// for open tunnels to end. When ctx ends first it closes what is left
// (as Close) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	if err := s.hs.Shutdown(ctx); err != nil {
		s.Close()
		return err
	}
	// A connection is done once its streams are, but a handler may still
	// be returning.
	s.waitStreams()
	return nil
}

// Close closes the listeners and every connection at once, resetting
// open tunnels, and waits for their handlers to return.
func (s *Server) Close() error {
	s.init()
	err := s.hs.Close()
	s.waitStreams()
	return err
}

// waitStreams waits for handlers, which end promptly once their
// connection is gone: its closing cancels the request context, which
// closes the app connection both copies use.
func (s *Server) waitStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.streams > 0 {
		s.handled.Wait()
	}
}

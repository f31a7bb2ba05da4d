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
	"syscall"
	"time"

	"golang.org/x/net/http2"
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
	TLS    *tls.ConnectionState // nil on h2c; the peer's certificate once security lands
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
	// TLSConfig, when set, serves TLS (the security issue's mTLS); nil
	// serves h2c with prior knowledge.
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
	// AppDialTimeout bounds Dial. Default DefaultAppDialTimeout.
	AppDialTimeout time.Duration
	// Log receives connection-level failures; nil discards them.
	Log *slog.Logger

	initOnce sync.Once
	h2       *http2.Server
	// hs only carries x/net's graceful-shutdown hook: Shutdown on it sends
	// GOAWAY on every connection ServeConn registered. It serves nothing.
	hs     *http.Server
	ctx    context.Context // parent of every stream; cancelled by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	active    int // connection goroutines and handlers running
	closing   bool
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.h2 = &http2.Server{
			MaxConcurrentStreams: uint32(positiveInt(int(s.MaxConcurrentStreams), DefaultMaxConcurrentStreams)),
			IdleTimeout:          positive(s.IdleTimeout, DefaultServerIdleTimeout),
			// Windows sized for bulk transfer: a stream may have 1 MiB in
			// flight and a connection 4 MiB, which also bounds the memory
			// one slow app can pin.
			MaxUploadBufferPerStream:     1 << 20,
			MaxUploadBufferPerConnection: 4 << 20,
		}
		s.hs = &http.Server{}
		// Only fails for TLS settings, which hs has none of.
		if err := http2.ConfigureServer(s.hs, s.h2); err != nil {
			panic(err)
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[net.Conn]struct{}{}
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
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			// Out of file descriptors and the like: wait, as net/http
			// does, rather than spin or give up serving.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger().Warn("tunnel: accept", "err", err, "retry", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(c) {
			c.Close()
			return ErrServerClosed
		}
		go s.serveConn(c)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.active++
	return true
}

func (s *Server) done(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c != nil {
		delete(s.conns, c)
	}
	s.active--
}

// connInfo is what a stream's handler needs of its connection; it reaches
// the handler through the request context.
type connInfo struct {
	nc           net.Conn
	peer, local  netip.AddrPort
	tls          *tls.ConnectionState
	sawFirstOnce atomic.Bool
}

type connInfoKey struct{}

func (s *Server) serveConn(nc net.Conn) {
	defer s.done(nc)
	defer nc.Close()
	rht := positive(s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	if rht > 0 {
		nc.SetReadDeadline(time.Now().Add(rht))
	}
	ci := &connInfo{nc: nc, peer: addrPort(nc.RemoteAddr()), local: addrPort(nc.LocalAddr())}
	c := nc
	if s.TLSConfig != nil {
		cfg := s.TLSConfig.Clone()
		cfg.NextProtos = []string{http2.NextProtoTLS}
		tc := tls.Server(nc, cfg)
		ctx, cancel := context.WithTimeout(s.ctx, rht)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.logger().Debug("tunnel: TLS handshake", "peer", ci.peer, "err", err)
			return
		}
		st := tc.ConnectionState()
		ci.tls = &st
		c = tc
	}
	s.h2.ServeConn(c, &http2.ServeConnOpts{
		Context:    context.WithValue(s.ctx, connInfoKey{}, ci),
		BaseConfig: s.hs,
		Handler:    http.HandlerFunc(s.serveStream),
	})
}

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
	s.active++
	s.mu.Unlock()
	defer s.done(nil)

	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	if ci == nil {
		http.Error(w, "tunnel: no connection", http.StatusInternalServerError)
		return
	}
	if !ci.sawFirstOnce.Swap(true) {
		// The connection proved itself; from now on the idle timeout and
		// health pings govern it.
		ci.nc.SetReadDeadline(time.Time{})
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
	peer := Peer{Addr: ci.peer, Local: ci.local, TLS: ci.tls, Header: r.Header}
	authorize := s.Authorize
	if authorize == nil {
		authorize = ownAddress
	}
	if err := authorize(target, peer); err != nil {
		http.Error(w, fmt.Sprintf("tunnel: %s may not reach %s: %v", peer.Addr, target, err), http.StatusForbidden)
		return
	}
	dial := s.Dial
	if dial == nil {
		dial = dialFromTarget
	}
	ctx, cancel := context.WithTimeout(r.Context(), positive(s.AppDialTimeout, DefaultAppDialTimeout))
	app, err := dial(ctx, target)
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
		return // x/net's ResponseWriter always flushes
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
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(target.Addr(), 0))}
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
	s.stopListening()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// Repeated because a connection accepted just before closing
		// registers for GOAWAY only once ServeConn starts; each call only
		// reaches connections not yet told.
		s.hs.Shutdown(ctx)
		s.mu.Lock()
		n := s.active
		s.mu.Unlock()
		if n == 0 {
			s.cancel()
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		}
	}
}

// Close closes the listeners and every connection at once, resetting
// open tunnels, and waits for their goroutines to end.
func (s *Server) Close() error {
	s.init()
	s.stopListening()
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		n := s.active
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) stopListening() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
}

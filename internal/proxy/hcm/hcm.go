package hcm

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/authz"
	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/router"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
)

// Envoy-like defaults for untrusted downstream input.
const (
	DefaultMaxHeaderBytes       = 60 << 10 // Envoy's max_request_headers_kb
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultIdleTimeout          = time.Hour // Envoy's common_http_protocol_options.idle_timeout
	DefaultMaxConcurrentStreams = 1024
	// DefaultRouteTimeout is Envoy's route timeout when xDS sets none. A
	// route that sets 0 has none.
	DefaultRouteTimeout = 15 * time.Second
	// MaxFrameSize is the largest HTTP/2 frame the server reads
	// (SETTINGS_MAX_FRAME_SIZE): the protocol's initial value.
	MaxFrameSize = 16 << 10
)

// Conn is a downstream connection with what the listener learned about it.
type Conn struct {
	net.Conn
	// Dst is where the connection was headed: the original destination of
	// a captured connection, the tunnel's target, or the local address.
	Dst netip.AddrPort
	// Source is the downstream peer (the app, or the calling pod's proxy
	// for inbound), for X-Forwarded-For and source-IP hashing.
	Source netip.AddrPort
	// PeerID is the downstream's SPIFFE ID as its mTLS certificate proves
	// it (spiffe://cluster.local/ns/NS/sa/SA), or "" for plaintext: what
	// authorization's principals and X-Forwarded-Client-Cert are about.
	PeerID string
	// PeerCertHash is the hex SHA-256 of the peer's leaf certificate (DER),
	// for X-Forwarded-Client-Cert's Hash; "" for plaintext.
	PeerCertHash string
	// SNI is the server name the downstream's TLS handshake asked for
	// (the mTLS tunnel's or the captured connection's), "" for plaintext:
	// authorization's connection.sni.
	SNI string
	// Routes are the routes for this connection's requests; nil means the
	// Server's Routes function decides per request (the forward proxy).
	Routes func() *router.Table
	// Authz is the authorization of this connection's chain, read per
	// request so a policy change applies to open connections; nil (or a
	// nil engine) allows every request.
	Authz func() *authz.Engine
	// JWT is the request authentication (jwt_authn) of this connection's
	// chain, read per request like Authz; nil (or a nil filter) verifies
	// nothing.
	JWT func() *jwtauthn.Filter
	// Paths is the path normalization of this connection's chain (its
	// connection manager's normalize_path, merge_slashes and escaped
	// slashes action), read per request like Authz; nil leaves paths as
	// they came.
	Paths func() xdsresource.PathNormalization
	// Done, if set, is called once when the server is finished with the
	// connection (tunnel streams end then).
	Done func()
	// Peer is the calling workload as its sidecar told this one (the
	// tunnel's peer metadata), for inbound telemetry; nil: unknown.
	Peer *metrics.Peer
	// Service is the destination service the caller addressed, when the
	// connection says (the tunnel's); "" takes it from each request's
	// authority.
	Service string

	closeOnce sync.Once
	sourceStr atomic.Pointer[string] // Source's address as X-Forwarded-For has it
}

// sourceIP is the source address as X-Forwarded-For carries it, formatted
// once per connection.
func (c *Conn) sourceIP() string {
	if p := c.sourceStr.Load(); p != nil {
		return *p
	}
	s := c.Source.Addr().Unmap().String()
	c.sourceStr.Store(&s)
	return s
}

// Close closes the connection and reports it done.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.Done != nil {
			c.Done()
		}
	})
	return err
}

// Config configures a Server.
type Config struct {
	// Outbound servers append X-Forwarded-For and generate X-Request-Id:
	// they are where a request enters the mesh from the app.
	Outbound bool
	// Routes resolves the route table of a request on a connection whose
	// Conn.Routes is nil (the explicit-mode forward proxy, which picks the
	// table by the request's port). nil answers 404 (NR).
	Routes func(c *Conn, r *http.Request) *router.Table
	// Cluster returns the upstream cluster of that name, nil if unknown.
	Cluster func(name string) *upstream.Cluster
	// Connect serves a CONNECT request (forward proxy). nil refuses it
	// with 405.
	Connect func(w http.ResponseWriter, r *http.Request, c *Conn)
	// LocalID is the proxy's own SPIFFE ID, X-Forwarded-Client-Cert's By
	// on inbound mTLS requests; nil leaves By empty.
	LocalID func() string

	MaxHeaderBytes       int
	ReadHeaderTimeout    time.Duration
	IdleTimeout          time.Duration
	MaxConcurrentStreams uint32
	Log                  *slog.Logger
	// Telemetry, when set, reports every request (telemetry.go).
	Telemetry *Telemetry
}

// Stats are the server's counters, by Envoy's http.<prefix>. names.
type Stats struct {
	CxTotal, CxActive       atomic.Int64
	RqTotal                 atomic.Uint64
	Rq1xx, Rq2xx, Rq3xx     atomic.Uint64
	Rq4xx, Rq5xx            atomic.Uint64
	NoRoute, NoCluster      atomic.Uint64 // NR, NC
	RqTimeout               atomic.Uint64 // upstream timeouts (UT)
	RqHeaderTooLarge        atomic.Uint64 // 431 and HTTP/2's refusals, headers or trailers (see below)
	RqHeaderTimeout         atomic.Uint64 // 408
	RqAmbiguousFraming      atomic.Uint64 // 400: Content-Length with Transfer-Encoding
	CxProtocolError         atomic.Uint64 // HTTP/1 connections closed where net/http lost the client's framing
	UpstreamConnectFailures atomic.Uint64 // UF
	NoHealthyUpstream       atomic.Uint64 // UH
	Overflow                atomic.Uint64 // UO

	// Path normalization's (pathnorm.go) 400s and 307s.
	RqFailedPathNormalization      atomic.Uint64
	RqRedirectedWithNormalizedPath atomic.Uint64

	// Trailers over the limit count as headers over it, in
	// RqHeaderTooLarge when their request is refused: Envoy applies
	// max_request_headers_kb to both alike, with the same check, the same
	// 431 on HTTP/1.1 and the same counter on HTTP/2.
	//
	// HeaderOverflow is that HTTP/2 counter, Envoy's http2.header_overflow
	// (rooted at http2., not http.<prefix>.): HTTP/2 header blocks over
	// the limit, headers or trailers, refused or not. Only it counts
	// trailers a little over the limit, which net/http's server cuts to
	// the fields that fit instead of refusing the request (h2limits.go).
	HeaderOverflow atomic.Uint64

	// Mirroring's (mirror.go): copies not sent because maxMirrorsInFlight
	// were on their way, and requests not mirrored because their body is
	// streamed or larger than maxMirrorBody.
	RqMirrorDropped atomic.Uint64
	RqMirrorSkipped atomic.Uint64
}

// Server serves downstream HTTP connections.
type Server struct {
	cfg   Config
	hs    *http.Server
	ln    *chanListener
	stats Stats
	log   *slog.Logger

	draining atomic.Bool
	serveErr chan error
	mirrors  mirrors // copies in flight (mirror.go)

	// Connections on the fast path (fast.go), for drain and close.
	fastMu     sync.Mutex
	fast       map[*fastConn]struct{}
	fastClosed bool
	fastWG     sync.WaitGroup
}

// New starts a server; hand it connections with Serve and stop it with
// Shutdown or Close.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, serveErr: make(chan error, 1)}
	s.ln = newChanListener(&s.stats)
	s.ln.h2lim = newH2Limits(positive(cfg.MaxHeaderBytes, DefaultMaxHeaderBytes), positive(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout))
	s.log = cfg.Log
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s.hs = &http.Server{
		Handler:           http.HandlerFunc(s.serveStd),
		Protocols:         &protos,
		MaxHeaderBytes:    positive(cfg.MaxHeaderBytes, DefaultMaxHeaderBytes),
		ReadHeaderTimeout: positive(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       positive(cfg.IdleTimeout, DefaultIdleTimeout),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: positive(int(cfg.MaxConcurrentStreams), DefaultMaxConcurrentStreams),
			// The protocol's default (and Envoy's) rather than net/http's
			// 1 MiB: a client may not make the proxy buffer a megabyte
			// per frame, and a frame over 16 KiB is a FRAME_SIZE_ERROR as
			// RFC 9113 §4.2 says (h2spec http2/4.2/3).
			MaxReadFrameSize: MaxFrameSize,
		},
		// The one way net/http tells a handler which connection a
		// request came on (serveStd).
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: s.connState,
		// Malformed requests from apps are theirs to see in the response,
		// not ours to log at warning level.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() { s.serveErr <- s.hs.Serve(s.ln) }()
	return s
}

// serveStd is net/http's handler. The request's connection reaches it
// only through the context ConnContext made, which is net/http's one way
// to tell a handler which connection a request came on; it is looked up
// once, here, and goes on in the exchange.
func (s *Server) serveStd(w http.ResponseWriter, r *http.Request) {
	e := &stdExchange{}
	e.w.ResponseWriter = w
	e.x.w, e.x.r = &e.w, r
	if hc, ok := r.Context().Value(connKey{}).(*headerConn); ok {
		e.x.hc, e.x.c = hc, hc.Conn
	}
	s.serveFramed(&e.x)
}

// stdExchange is a net/http request's exchange and writer, in one
// allocation.
type stdExchange struct {
	x exchange
	w stdWriter
}

// serveFramed refuses an HTTP/1 request that carried both Content-Length
// and Transfer-Encoding (see headerConn.frames) with 400 and closes the
// connection, as Envoy does unless allow_chunked_length is set; every
// other request goes on to serveHTTP.
func (s *Server) serveFramed(x *exchange) {
	if hc := x.hc; hc != nil && x.http1() {
		if hc.ambiguous() {
			s.stats.RqTotal.Add(1)
			s.stats.RqAmbiguousFraming.Add(1)
			x.w.Header().Set("Connection", "close")
			s.local(x.w, http.StatusBadRequest, 0, "request has both Content-Length and Transfer-Encoding")
			return
		}
		if !hc.fast && hc.desynced() {
			// Not a request the client sent: no answer, and the
			// connection closes (net/http takes ErrAbortHandler quietly).
			s.stats.CxProtocolError.Add(1)
			panic(http.ErrAbortHandler)
		}
		if hc.fast {
			hc.requestNames = hc.fastNames
		} else {
			hc.requestNames = hc.takeNames()
		}
	}
	s.serveHTTP(x)
}

func positive[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

type connKey struct{}

// Serve hands c to the server, which owns it from now on. It starts on
// the fast path (fast.go), which passes it to net/http at its first
// request that needs more than plain HTTP/1.1.
func (s *Server) Serve(c *Conn) {
	go s.serveFast(c)
}

// Stats returns the live counters.
func (s *Server) Stats() *Stats { return &s.stats }

func (s *Server) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.stats.CxTotal.Add(1)
		s.stats.CxActive.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.stats.CxActive.Add(-1)
	}
}

// Drain makes every further response close its HTTP/1.1 connection and
// sends GOAWAY on HTTP/2 ones, so clients move to other endpoints while
// requests in flight finish.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.hs.SetKeepAlivesEnabled(false)
	s.closeFast(false)
}

// Shutdown stops taking connections, closes idle ones and waits for
// requests in flight; when ctx ends first it closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	// Fast connections first: the last of them may still hand a
	// connection to net/http.
	ferr := s.shutdownFast(ctx)
	err := s.hs.Shutdown(ctx)
	if err != nil {
		s.hs.Close()
	}
	<-s.serveErr
	s.mirrors.stop()
	if err == nil {
		err = ferr
	}
	return err
}

// Close closes every connection at once.
func (s *Server) Close() error {
	s.fastMu.Lock()
	s.fastClosed = true
	s.fastMu.Unlock()
	s.closeFast(true)
	s.fastWG.Wait()
	err := s.hs.Close()
	<-s.serveErr
	s.mirrors.stop()
	return err
}

// chanListener is a net.Listener whose connections are pushed in by the
// proxy's own listeners.
type chanListener struct {
	stats  *Stats
	h2lim  *h2Limits
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(stats *Stats) *chanListener {
	return &chanListener{stats: stats, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c *Conn) bool {
	select {
	case l.ch <- &headerConn{Conn: c, stats: l.stats, h2lim: l.h2lim}:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

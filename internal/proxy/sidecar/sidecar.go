package sidecar

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/admin"
	"github.com/trellismesh/trellis/internal/proxy/apphealth"
	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/dnsproxy"
	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/listener"
	"github.com/trellismesh/trellis/internal/proxy/router"
	"github.com/trellismesh/trellis/internal/proxy/tunnel"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsclient"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Mode is how traffic reaches the proxy.
type Mode int

const (
	// Explicit: the app uses the proxy as its HTTP_PROXY on the pod IP's
	// 15001, and other sidecars reach this pod through its tunnel port.
	Explicit Mode = iota
	// Transparent: nftables capture sends outbound traffic to 15001 and
	// inbound to 15006.
	Transparent
)

func (m Mode) String() string {
	if m == Transparent {
		return "REDIRECT"
	}
	return "NONE"
}

// Ports of the sidecar contract (ARCHITECTURE.md, "Ports").
const (
	AdminPort    = 15000
	OutboundPort = 15001
	InboundPort  = 15006
	TunnelPort   = 15008
	HealthPort   = 15021
)

// DefaultDrainDuration bounds a graceful drain: requests in flight get
// this long to finish (Istio's terminationDrainDuration).
const DefaultDrainDuration = 5 * time.Second

// Options configure a Proxy.
type Options struct {
	Mode Mode
	// PodIP is the pod's address: bound in explicit mode, the source of
	// upstream connections, and the node's INSTANCE_IPS.
	PodIP netip.Addr
	// Node is the xDS identity; its IP and InterceptionMode are filled in
	// from PodIP and Mode when empty.
	Node xdsclient.Node
	// XDS is the control plane's address ("host:port" or "unix:///path").
	XDS string
	// AdminSocket, when set, also serves admin on this Unix socket (local
	// mode), where drain and quit are allowed.
	AdminSocket string
	// DrainDuration bounds a graceful drain (default DefaultDrainDuration).
	DrainDuration time.Duration
	// MaxConnections bounds the downstream connections of each listener
	// (default listener.DefaultMaxConnections); the forward proxy answers
	// those over it with a 503 before closing them.
	MaxConnections int
	// Backoff paces xDS reconnects (zero: xdsclient's defaults).
	Backoff xdsclient.Backoff
	// ReadHeaderTimeout bounds how long a downstream request's headers
	// may take to arrive before a 408 (default hcm.DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	Log               *slog.Logger
	// DNS, when set, serves the DNS proxy on these addresses, UDP and TCP
	// (DNS capture: DNSCaptureAddrs); DNSUpstream is where it forwards
	// what it cannot answer (default: the first nameserver of
	// /etc/resolv.conf at start). See dns.go.
	DNS         []string
	DNSUpstream netip.AddrPort
	// Identity is the proxy's workload certificate and trust bundle (the
	// CA-issued, rotating SVID in production, certs.NewStatic in tests).
	// With one, sidecar-to-sidecar traffic runs over mTLS through the
	// peer's tunnel port and the tunnel port refuses plaintext; nil keeps
	// every connection plaintext, as before the mesh had a CA.
	Identity certs.Source
	// XDSTLS, when set, dials XDS over TLS with it: the control plane's
	// secure port, the workload certificate as client certificate and the
	// server's verified against the mesh root (certs.ControlPlaneConfig).
	// Nil keeps plaintext h2c, for loopback control planes.
	XDSTLS *tls.Config
	// MaxConnectionAge is the age of an outbound HTTP/2 connection after
	// which new streams go to a new one, for clusters whose
	// DestinationRule sets no maxConnectionDuration (upstream.Options):
	// 0 means DefaultMaxConnectionAge, a negative value turns it off.
	MaxConnectionAge time.Duration
	// AppProbers are the pod's rewritten probes, answered on the status
	// port (15020, ISTIO_KUBE_APP_PROBERS); nil answers none.
	AppProbers apphealth.Probers
	// AppMetrics, when set, is merged into the status port's
	// /stats/prometheus after the proxy's own metrics.
	AppMetrics *AppMetrics
}

// DefaultMaxConnectionAge is Options.MaxConnectionAge when unset: long
// enough that reconnecting costs nothing, short enough that a long-lived
// gRPC connection reaches a new backend behind one address within
// minutes.
const DefaultMaxConnectionAge = 5 * time.Minute

// Proxy is a running sidecar.
type Proxy struct {
	opts Options
	log  *slog.Logger

	applyMu  sync.Mutex
	routing  atomic.Pointer[routing]
	clusters atomic.Pointer[clusterSet]

	// The updates last applied of each type: written under applyMu and
	// versionsMu, so the update path reads them under the one and the
	// admin pages under the other.
	versionsMu sync.Mutex
	cds        applied[*xdsresource.Cluster]
	eds        applied[*xdsresource.ClusterLoadAssignment]
	lds        applied[*xdsresource.Listener]
	rds        applied[*xdsresource.RouteConfig]

	updates, rejected atomic.Uint64
	// xdsConnected is true while the xDS stream delivers config.
	xdsConnected atomic.Bool
	// tel is Istio's metrics and what this workload tells its peers
	// (telemetry.go).
	tel telemetry

	outbound, inbound *hcm.Server
	// inboundPassthrough reaches the app when an inbound request's
	// cluster is gone (Istio's InboundPassthroughCluster).
	inboundPassthrough *upstream.Cluster
	tunnelServer       *tunnel.Server
	tunnelDialer       *tunnel.Dialer
	own                atomic.Pointer[ownID] // see localID
	// TLS origination (DestinationRule SIMPLE, MUTUAL) handshakes.
	originationHandshakes, originationFailures atomic.Uint64
	// Direct mTLS handshakes with proxyless gRPC endpoints (proxyless.go).
	proxylessHandshakes, proxylessFailures atomic.Uint64
	lns                                    []*listener.Listener
	listening                              atomic.Bool
	tcp                                    tcpStats
	dns                                    *dnsproxy.Server // nil without DNS capture

	// PeerAuthentication on the inbound side (peerauthn.go).
	inboundTLSOnce                           sync.Once
	inboundTLSCfg                            *tls.Config
	inboundNoChain, tunnelNoChain            atomic.Uint64
	inboundTLSHandshakes, inboundTLSFailures atomic.Uint64

	// jwks holds the remote JWKS of RequestAuthentications across config
	// updates, fetched in the background (jwt.go).
	jwks *jwtauthn.Cache

	bg sync.WaitGroup // retiring clusters, TCP copies

	quit     chan struct{}
	quitOnce sync.Once
	drainMu  sync.Mutex
	draining bool
}

// New prepares a proxy; Run starts it.
func New(opts Options) *Proxy {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Node.IP == "" && opts.PodIP.IsValid() {
		opts.Node.IP = opts.PodIP.String()
	}
	if opts.Node.InterceptionMode == "" {
		opts.Node.InterceptionMode = opts.Mode.String()
	}
	p := &Proxy{
		opts: opts,
		log:  log,
		quit: make(chan struct{}),
		jwks: jwtauthn.NewCache(jwtauthn.CacheOptions{Log: log}),
	}
	p.initTelemetry()
	p.routing.Store(&routing{routes: map[string]*router.Table{}, passthrough: passthroughTable(false)})
	p.clusters.Store(&clusterSet{byName: map[string]*upstream.Cluster{}, endpoints: map[string]*xdsresource.ClusterLoadAssignment{}})
	if opts.Mode == Explicit || opts.Identity != nil {
		p.tunnelDialer = &tunnel.Dialer{Source: opts.PodIP}
	}
	ipc := &xdsresource.Cluster{Name: "InboundPassthroughCluster", Type: xdsresource.ClusterOriginalDst, LBPolicy: xdsresource.LBClusterProvided}
	p.inboundPassthrough = upstream.New(ipc, balance.New(ipc), p.upstreamOptions(true, ipc))
	return p
}

// upstreamOptions are the options of a cluster's upstream; inbound ones
// reach the local app. xc is the cluster (nil for the inbound
// passthrough), whose TLS settings decide how each host is dialled (see
// clusterDialer).
func (p *Proxy) upstreamOptions(inbound bool, xc *xdsresource.Cluster) upstream.Options {
	o := upstream.Options{}
	if ip := p.appSource(inbound); ip.IsValid() {
		o.LocalIP = net.IP(ip.AsSlice())
	}
	if !inbound {
		o.Dial = p.clusterDialer(xc, o.LocalIP)
		// The app behind an inbound cluster is one process: there is
		// nothing to rebalance to.
		o.MaxConnectionAge = max(0, cmp.Or(p.opts.MaxConnectionAge, DefaultMaxConnectionAge))
	}
	return o
}

// inboundSource is where a transparent-mode proxy hands inbound traffic
// to the app from (Istio's 127.0.0.6): the capture rules let the proxy's
// connections from it through, where one from the pod IP to the pod IP
// would be captured again.
var (
	inboundSource  = netip.AddrFrom4([4]byte{127, 0, 0, 6})
	inboundSource6 = netip.MustParseAddr("::6")
)

// appSource is the source address of upstream connections: the pod IP,
// so peers see which workload calls, except for inbound traffic in
// transparent mode.
func (p *Proxy) appSource(inbound bool) netip.Addr {
	if inbound && p.opts.Mode == Transparent {
		if p.opts.PodIP.Is6() && !p.opts.PodIP.Is4In6() {
			return inboundSource6
		}
		return inboundSource
	}
	return p.opts.PodIP
}

// Run serves until ctx ends or /quitquitquit, then drains and returns.
// It returns an error only if the proxy cannot start (a port is taken).
func (p *Proxy) Run(ctx context.Context) error {
	stopDNS, err := p.serveDNS()
	if err != nil {
		return err
	}
	defer stopDNS()
	hcfg := hcm.Config{
		Cluster:           p.cluster,
		ReadHeaderTimeout: p.opts.ReadHeaderTimeout,
		LocalID:           p.localID,
		Log:               p.log,
	}
	out := hcfg
	out.Outbound = true
	out.Telemetry = p.hcmTelemetry(true)
	out.Routes = p.forwardRoutes
	out.Connect = p.connect
	p.outbound = hcm.New(out)
	in := hcfg
	in.Cluster = p.inboundCluster
	in.Telemetry = p.hcmTelemetry(false)
	p.inbound = hcm.New(in)

	if err := p.listen(); err != nil {
		p.outbound.Close()
		p.inbound.Close()
		return err
	}
	stopAdmin, err := p.serveAdmin()
	if err != nil {
		p.closeListeners()
		p.outbound.Close()
		p.inbound.Close()
		return err
	}
	stopStats, err := p.serveStats()
	if err != nil {
		stopAdmin()
		p.closeListeners()
		p.outbound.Close()
		p.inbound.Close()
		return err
	}
	defer stopStats()
	stopStatus, err := serveStatus(p.opts, p.opts.AppProbers, p.writeMergedStats, p.opts.AppMetrics)
	if err != nil {
		stopAdmin()
		p.closeListeners()
		p.outbound.Close()
		p.inbound.Close()
		return err
	}
	defer stopStatus()

	xctx, stopXDS := context.WithCancel(context.Background())
	xdsDone := make(chan struct{})
	go func() {
		defer close(xdsDone)
		err := xdsclient.Run(xctx, xdsclient.Config{Server: p.opts.XDS, TLS: p.opts.XDSTLS, Node: p.opts.Node, Backoff: p.opts.Backoff, Log: p.log, Connected: p.xdsConnected.Store}, p.subscriptions()...)
		if err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error("xds client stopped", "err", err)
		}
	}()

	select {
	case <-ctx.Done():
	case <-p.quit:
	}
	p.log.Info("draining", "within", p.opts.retireTimeout())
	p.drain()
	// xDS stays up during the drain so that endpoint updates keep steering
	// the requests still being made.
	stopXDS()
	<-xdsDone
	// Spans still queued go to the collector while its cluster is up;
	// access logs are flushed.
	flushCtx, flushed := context.WithTimeout(context.Background(), 5*time.Second)
	p.routing.Load().tel.closeExcept(flushCtx, nil)
	flushed()
	stopAdmin()
	for _, c := range p.clusters.Load().byName {
		c.Close()
	}
	p.inboundPassthrough.Close()
	p.jwks.Close()
	if p.tunnelDialer != nil {
		p.tunnelDialer.Close()
	}
	p.bg.Wait()
	p.log.Info("stopped")
	return nil
}

// Drain starts a graceful drain (admin /drain): responses close their
// connections and HTTP/2 gets GOAWAY, so clients go elsewhere.
func (p *Proxy) Drain(context.Context) error {
	p.outbound.Drain()
	p.inbound.Drain()
	return nil
}

// Quit drains and stops the proxy (admin /quitquitquit).
func (p *Proxy) Quit() { p.quitOnce.Do(func() { close(p.quit) }) }

// drain stops accepting, lets what is in flight finish within the drain
// duration, and closes the rest.
func (p *Proxy) drain() {
	p.drainMu.Lock()
	p.draining = true
	p.drainMu.Unlock()
	p.outbound.Drain()
	p.inbound.Drain()
	p.closeListeners()
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.retireTimeout())
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range []func(context.Context) error{p.outbound.Shutdown, p.inbound.Shutdown, p.shutdownTunnel} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	wg.Wait()
	for _, l := range p.lns {
		l.Wait(ctx)
	}
}

func (p *Proxy) shutdownTunnel(ctx context.Context) error {
	if p.tunnelServer == nil {
		return nil
	}
	return p.tunnelServer.Shutdown(ctx)
}

func (p *Proxy) closeListeners() {
	for _, l := range p.lns {
		l.Close()
	}
	p.listening.Store(false)
}

// listen binds the mode's ports and starts accepting.
func (p *Proxy) listen() error {
	ip := p.opts.PodIP
	bind := func(a netip.Addr, port int) string {
		return net.JoinHostPort(a.String(), strconv.Itoa(port))
	}
	type lspec struct {
		name string
		addr string
		opts listener.Options
		h    listener.Handler
	}
	var specs []lspec
	switch p.opts.Mode {
	case Explicit:
		if !ip.IsValid() {
			return errors.New("explicit mode needs the pod IP (POD_IP)")
		}
		specs = []lspec{
			{name: virtualOutbound, addr: bind(ip, OutboundPort), h: p.serveForwardProxy,
				opts: listener.Options{OverflowReply: overflowReply}},
		}
	case Transparent:
		// Every address of both families: capture redirects IPv4 and
		// IPv6 alike, and a dual-stack socket takes both.
		all := anyAddr()
		specs = []lspec{
			{name: virtualOutbound, addr: bind(all, OutboundPort), opts: listener.Options{OriginalDst: true}, h: p.serveCapturedOutbound},
			{name: virtualInbound, addr: bind(all, InboundPort), opts: listener.Options{OriginalDst: true}, h: p.serveCapturedInbound},
		}
	}
	tunnelAddr := bind(anyAddr(), TunnelPort)
	if ip.IsValid() {
		tunnelAddr = bind(ip, TunnelPort)
	}
	p.tunnelServer = &tunnel.Server{DialPeer: p.tunnelInbound, Handle: p.tunnelHandle, Log: p.log}
	if p.opts.Identity != nil {
		// mTLS only: a plaintext or unverifiable peer is refused at the
		// handshake. Who may reach which port is authorization's call.
		p.tunnelServer.TLSConfig = certs.ServerConfig(p.opts.Identity, nil)
	}
	specs = append(specs, lspec{name: "tunnel", addr: tunnelAddr, h: func(c net.Conn, _ netip.AddrPort) { p.tunnelServer.ServeConn(c) }})
	for _, s := range specs {
		s.opts.Log = p.log
		s.opts.MaxConnections = p.opts.MaxConnections
		l, err := listener.Listen(s.name, s.addr, s.opts)
		if err != nil {
			p.closeListeners()
			return err
		}
		p.lns = append(p.lns, l)
	}
	for i, s := range specs {
		l, h := p.lns[i], s.h
		go l.Serve(h)
	}
	p.listening.Store(true)
	return nil
}

// overflowReply is what an app gets from its forward proxy when the proxy
// is at its connection limit.
var overflowReply = func() []byte {
	const body = "the sidecar is at its downstream connection limit; retry later\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

// anyAddr is the unspecified address to bind for every interface: IPv6's
// (dual-stack, so IPv4 too) when the host has IPv6, else IPv4's.
func anyAddr() netip.Addr {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		ln.Close()
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

// serveAdmin starts admin (15000) and health (15021), and admin on the
// Unix socket when configured; they stop when the returned function is
// called, which waits for them.
func (p *Proxy) serveAdmin() (stop func(), err error) {
	adminIP := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	healthIP := anyAddr()
	if p.opts.Mode == Explicit {
		adminIP, healthIP = p.opts.PodIP, p.opts.PodIP
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	start := func(network, addr string, h http.Handler) error {
		if network == "unix" {
			os.Remove(addr) // left by a killed proxy
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			stop()
			return fmt.Errorf("admin listener on %s: %w", addr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := admin.Serve(ctx, ln, h); err != nil {
				p.log.Error("admin server failed", "addr", addr, "err", err)
			}
		}()
		return nil
	}
	ad := admin.NewAdmin(p, p.log)
	if err := start("tcp", net.JoinHostPort(adminIP.String(), strconv.Itoa(AdminPort)), ad); err != nil {
		return nil, err
	}
	if err := start("tcp", net.JoinHostPort(healthIP.String(), strconv.Itoa(HealthPort)), admin.NewHealth(p)); err != nil {
		return nil, err
	}
	if p.opts.AdminSocket != "" {
		if err := start("unix", p.opts.AdminSocket, ad); err != nil {
			return nil, err
		}
	}
	return stop, nil
}

// inboundCluster is the inbound connection manager's cluster lookup: a
// request on a connection whose inbound cluster an update removed (the
// pod stopped backing the service while a peer still sends to it) goes to
// the app as it would on a port no service claims.
func (p *Proxy) inboundCluster(name string) *upstream.Cluster {
	if c := p.cluster(name); c != nil {
		return c
	}
	return p.inboundPassthrough
}

// cluster is the HTTP connection manager's cluster lookup.
func (p *Proxy) cluster(name string) *upstream.Cluster {
	return p.clusters.Load().byName[name]
}

package sidecar

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/netio"
	"github.com/trellismesh/trellis/internal/proxy/router"
	"github.com/trellismesh/trellis/internal/proxy/sniff"
	"github.com/trellismesh/trellis/internal/proxy/tunnel"
	"github.com/trellismesh/trellis/internal/proxy/upstream"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
)

// tcpStats are the TCP proxy's counters, by Envoy's tcp.<prefix>. names.
type tcpStats struct {
	cxTotal, cxNoRoute, cxConnectFail atomic.Uint64
	rxBytes, txBytes                  atomic.Uint64
}

// serveHTTP hands c to an HTTP connection manager and returns once it is
// done with it, so the listener's accounting covers the connection's life.
func (p *Proxy) serveHTTP(s *hcm.Server, c *hcm.Conn) {
	done := make(chan struct{})
	c.Done = func() { close(done) }
	s.Serve(c)
	<-done
}

func remoteAddr(c net.Conn) netip.AddrPort {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// serveForwardProxy serves the explicit-mode outbound port: the app's
// HTTP_PROXY, speaking absolute-form requests and CONNECT.
func (p *Proxy) serveForwardProxy(c net.Conn, _ netip.AddrPort) {
	p.serveHTTP(p.outbound, &hcm.Conn{Conn: c, Source: remoteAddr(c), Paths: p.outboundPaths})
}

// forwardRoutes picks the route table of a forward-proxy request by its
// port, as a captured connection's would be by its destination port.
func (p *Proxy) forwardRoutes(_ *hcm.Conn, r *http.Request) *router.Table {
	port := uint32(80)
	if _, ps, err := net.SplitHostPort(r.Host); err == nil {
		if n, err := strconv.ParseUint(ps, 10, 16); err == nil {
			port = uint32(n)
		}
	}
	rt := p.routing.Load()
	if name, ok := rt.outboundHTTP[port]; ok {
		if t := rt.routes[name]; t != nil {
			return t
		}
	}
	return rt.passthrough
}

// serveCapturedOutbound serves a connection the capture sent to 15001:
// a TCP service by its VIP, an HTTP port's routes, or the passthrough.
func (p *Proxy) serveCapturedOutbound(c net.Conn, dst netip.AddrPort) {
	rt := p.routing.Load()
	if l := rt.tcpByAddr[dst]; l != nil {
		p.serveTCPListener(c, l, dst, dst)
		return
	}
	if name, ok := rt.outboundHTTP[uint32(dst.Port())]; ok {
		initial := rt.routes[name]
		routes := func() *router.Table {
			if t := p.routing.Load().routes[name]; t != nil {
				return t
			}
			return initial
		}
		p.serveSniffed(p.outbound, c, dst, routes, peerIdentity{})
		return
	}
	if l := rt.tcpByPort[uint32(dst.Port())]; l != nil {
		p.serveTCPListener(c, l, dst, dst)
		return
	}
	if rt.registryOnly {
		p.tcp.cxNoRoute.Add(1)
		return
	}
	p.proxyTCP(c, passthroughCluster, dst, nil)
}

// serveCapturedInbound serves a connection the capture sent to 15006, by
// virtualInbound's filter chain for its destination port.
func (p *Proxy) serveCapturedInbound(c net.Conn, dst netip.AddrPort) {
	c, peer, ok := p.admitCaptured(c, dst)
	if !ok {
		return
	}
	p.serveInbound(c, dst, peer)
}

// serveInbound serves an inbound connection for dst, this pod's ip:port;
// peer is who sent it, as mTLS proved (zero for plaintext).
func (p *Proxy) serveInbound(c net.Conn, dst netip.AddrPort, peer peerIdentity) {
	port := uint32(dst.Port())
	ch := p.routing.Load().inbound[port]
	if (ch == nil || ch.routes == nil) && !p.authorizeInboundConn(c, dst, peer) {
		return
	}
	switch {
	case ch == nil:
		// No service claims the port: pass it to the app as it is, as
		// Istio's InboundPassthroughCluster does.
		p.passInbound(c, dst)
	case ch.routes != nil:
		// A connection keeps the chain it was accepted on if an update
		// removes it (the pod stopped serving the port while a peer's
		// keep-alive connection still points here), as Envoy drains a
		// removed filter chain's connections rather than failing them.
		initial := ch.routes
		routes := func() *router.Table {
			if ch := p.routing.Load().inbound[port]; ch != nil && ch.routes != nil {
				return ch.routes
			}
			return initial
		}
		p.serveSniffed(p.inbound, c, dst, routes, peer)
	default:
		name := ch.tcp.Pick(rand.Uint64())
		if name == inboundPassthroughCluster {
			// A port-level PeerAuthentication's chain for a port no
			// service claims: to the app as it is.
			p.passInbound(c, dst)
			return
		}
		p.proxyTCPWith(c, name, dst, tcpLimitsOf(ch.tcp), &peer)
	}
}

// sniTimeout bounds the wait for a ClientHello on a port whose routes
// choose by server name: Envoy's default listener_filters_timeout. A
// client still silent then has no server name.
const sniTimeout = 15 * time.Second

// serveTCPListener proxies c by the filter chain of a TCP service port's
// listener that fits the connection: its destination (match, whose address
// may be unknown) and, when some chain asks for it, the server name of its
// TLS ClientHello, read ahead and replayed. A connection no chain takes is
// closed, as Envoy closes it. dst is the destination handed to the
// cluster (a passthrough dials it).
func (p *Proxy) serveTCPListener(c net.Conn, l *xdsresource.Listener, match, dst netip.AddrPort) {
	sni := ""
	if l.MatchesSNI() {
		res, sc, err := sniff.Detect(c, sniTimeout)
		if err != nil {
			return
		}
		c = sc
		if res.Protocol == sniff.TLS {
			sni = res.SNI
		}
	}
	fc := l.ChainFor(match, sni)
	if fc == nil || fc.TCP == nil {
		p.tcp.cxTotal.Add(1)
		p.tcp.cxNoRoute.Add(1)
		return
	}
	p.proxyTCPWith(c, fc.TCP.Pick(rand.Uint64()), dst, tcpLimitsOf(fc.TCP), nil)
}

// serveSniffed serves an HTTP port's connection as HTTP when it speaks
// HTTP, and as TCP otherwise: ports whose protocol was not declared are
// routed as HTTP, and a server-first protocol must not wait on us.
func (p *Proxy) serveSniffed(s *hcm.Server, c net.Conn, dst netip.AddrPort, routes func() *router.Table, peer peerIdentity) {
	res, sc, err := sniff.Detect(c, sniff.DefaultTimeout)
	if err != nil {
		return
	}
	if res.Protocol == sniff.HTTP1 || res.Protocol == sniff.HTTP2 {
		p.serveHTTP(s, &hcm.Conn{Conn: sc, Dst: dst, Source: remoteAddr(c), Routes: routes, Authz: p.httpAuthz(s, dst), JWT: p.httpJWT(s, dst), Paths: p.httpPaths(s, dst), PeerID: peer.id, PeerCertHash: peer.certHash, SNI: peer.sni, Peer: peer.meta, Service: peer.service})
		return
	}
	if s == p.inbound && !p.authorizeInboundConn(sc, dst, peer) {
		return
	}
	var from *peerIdentity
	if s == p.inbound {
		from = &peer
	}
	p.proxyTCP(sc, p.tcpClusterFor(routes(), dst), dst, from)
}

// tcpClusterFor is where non-HTTP bytes on an HTTP port go: the cluster
// of the service the destination belongs to, else the passthrough.
func (p *Proxy) tcpClusterFor(t *router.Table, dst netip.AddrPort) string {
	if t != nil {
		_, r := t.Match(&router.Request{Method: http.MethodGet, Authority: dst.String(), Path: "/"})
		if r != nil && r.Action != nil {
			if wc := router.PickCluster(r.Action, rand.Uint64()); wc != nil {
				return wc.Name
			}
		}
	}
	return passthroughCluster
}

// passInbound connects an unclaimed inbound connection to the app.
func (p *Proxy) passInbound(c net.Conn, dst netip.AddrPort) {
	up, err := p.dialApp(context.Background(), dst)
	if err != nil {
		p.tcp.cxConnectFail.Add(1)
		return
	}
	p.tcp.cxTotal.Add(1)
	p.pipe(c, up, nil)
}

// dialApp dials the local app (see appSource for the source address).
func (p *Proxy) dialApp(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, upstream.DefaultConnectTimeout)
	defer cancel()
	d := net.Dialer{}
	if ip := p.appSource(true); ip.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
	}
	return d.DialContext(ctx, "tcp", dst.String())
}

// tunnelInbound answers a tunnel (HBONE) stream for target, this pod's
// ip:port: HTTP ports go through the inbound connection manager over an
// in-memory pipe, TCP ports to their inbound cluster, others straight to
// the app.
func (p *Proxy) tunnelInbound(ctx context.Context, target netip.AddrPort, peer tunnel.Peer) (net.Conn, error) {
	if !p.admitTunnel(target, peer) {
		return nil, errors.New("a plaintext tunnel to " + target.String() + " is refused: the port takes mutual TLS only")
	}
	ch := p.routing.Load().inbound[uint32(target.Port())]
	if (ch == nil || ch.routes == nil) && !p.allowInboundTCP(peer.Addr, target, peerOf(peer.TLS)) {
		return nil, errors.New("connection to " + target.String() + " denied by authorization")
	}
	if ch != nil && ch.routes == nil {
		name := ch.tcp.Pick(rand.Uint64())
		cl := p.cluster(name)
		if cl == nil {
			return nil, errors.New("inbound cluster " + name + " not found")
		}
		up, _, _, err := cl.DialTCP(ctx, &upstream.Call{})
		return up, err
	}
	if ch == nil {
		return p.dialApp(ctx, target)
	}
	ours, theirs := net.Pipe()
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		defer ours.Close()
		p.serveInbound(withRemote(ours, peer.Addr), target, p.tunnelPeer(peer))
	}()
	return theirs, nil
}

// tunnelHandle serves an HTTP/1.1 CONNECT tunnel: the connection itself
// is the stream to target, handled as captured inbound traffic would be,
// with the caller's identity when the tunnel was mTLS.
func (p *Proxy) tunnelHandle(target netip.AddrPort, peer tunnel.Peer, c net.Conn) {
	if !p.admitTunnel(target, peer) {
		return
	}
	p.serveInbound(c, target, p.tunnelPeer(peer))
}

// proxyTCP connects c to a host of the named cluster and copies both ways.
// from is the caller of an inbound connection (nil for outbound), for
// telemetry.
func (p *Proxy) proxyTCP(c net.Conn, cluster string, dst netip.AddrPort, from *peerIdentity) {
	p.proxyTCPWith(c, cluster, dst, defaultTCPLimits, from)
}

// proxyTCPWith is proxyTCP under a TCP proxy filter's limits (tcplimits.go).
func (p *Proxy) proxyTCPWith(c net.Conn, cluster string, dst netip.AddrPort, lim tcpLimits, from *peerIdentity) {
	p.tcp.cxTotal.Add(1)
	cl := p.cluster(cluster)
	if cl == nil {
		p.tcp.cxNoRoute.Add(1)
		return
	}
	start := time.Now()
	up, host, flags, err := cl.DialTCP(context.Background(), &upstream.Call{Dst: dst})
	tl := p.tcpTelemetry(cluster, host, from, lim.proxy)
	if err != nil {
		p.tcp.cxConnectFail.Add(1)
		tl.open()
		tl.close(c, start, uint64(flags), 0, 0)
		return
	}
	series := tl.open()
	c, stop := limitTCP(c, up, lim)
	defer stop()
	sent, received := p.pipe(c, up, series)
	tl.close(c, start, 0, sent, received)
}

// pipe copies a <-> b until both directions end, passing half-closes
// through, then closes both; a is the downstream, whose bytes each way
// series counts (nil: none) and pipe returns.
func (p *Proxy) pipe(a, b net.Conn, series *metrics.TCPSeries) (sent, received int64) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, _ := io.Copy(b, a)
		received = n
		p.tcp.txBytes.Add(uint64(n))
		series.AddReceived(int(n))
		closeWrite(b)
	}()
	sent, _ = io.Copy(a, b)
	p.tcp.rxBytes.Add(uint64(sent))
	series.AddSent(int(sent))
	closeWrite(a)
	<-done
	a.Close()
	b.Close()
	return sent, received
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.Close()
}

// connect serves the forward proxy's CONNECT: a TCP service, an HTTP
// port's routes for what the tunnel carries (gRPC clients use CONNECT
// through HTTP_PROXY), or the passthrough.
func (p *Proxy) connect(w http.ResponseWriter, r *http.Request, c *hcm.Conn) {
	host, ps, err := net.SplitHostPort(r.Host)
	port, perr := strconv.ParseUint(ps, 10, 16)
	if err != nil || perr != nil || port == 0 {
		http.Error(w, "CONNECT target must be host:port", http.StatusBadRequest)
		return
	}
	rt := p.routing.Load()
	tcp := rt.tcpForHost(host, uint16(port), p.opts.Node.Namespace)
	var routes func() *router.Table
	var route *xdsresource.Route
	if tcp == nil {
		routes = func() *router.Table {
			rt := p.routing.Load()
			if name, ok := rt.outboundHTTP[uint32(port)]; ok {
				if t := rt.routes[name]; t != nil {
					return t
				}
			}
			return rt.passthrough
		}
		_, route = routes().Match(&router.Request{Method: http.MethodGet, Authority: r.Host, Path: "/"})
		if route == nil {
			w.Header().Set(hcm.FlagsHeader, upstream.NoRouteFound.String())
			http.Error(w, "no route for "+r.Host, http.StatusNotFound)
			return
		}
		if route.Direct != nil {
			http.Error(w, "CONNECT to "+r.Host+" refused by the mesh's outbound traffic policy", route.Direct.Status)
			return
		}
	}
	var dst netip.AddrPort
	if a, err := netip.ParseAddr(host); err == nil {
		dst = netip.AddrPortFrom(a.Unmap(), uint16(port))
	}

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "CONNECT needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
		return
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	inner := net.Conn(conn)
	if brw.Reader.Buffered() > 0 {
		b, _ := brw.Reader.Peek(brw.Reader.Buffered())
		inner = netio.Replay(conn, bytes.Clone(b))
	}
	if tcp != nil {
		// Chains match on the destination address; a CONNECT by name
		// is to the service's VIP, when it has one.
		match := dst
		if !match.IsValid() {
			match = netip.AddrPortFrom(netip.Addr{}, uint16(port))
			if a, err := netip.ParseAddr(tcp.Address); err == nil && !a.IsUnspecified() {
				match = netip.AddrPortFrom(a.Unmap(), uint16(port))
			}
		}
		p.serveTCPListener(inner, tcp, match, dst)
		return
	}
	res, sc, err := sniff.Detect(inner, sniff.DefaultTimeout)
	if err != nil {
		return
	}
	if res.Protocol == sniff.HTTP1 || res.Protocol == sniff.HTTP2 {
		p.serveHTTP(p.outbound, &hcm.Conn{Conn: sc, Dst: dst, Source: c.Source, Routes: routes, Paths: p.outboundPaths})
		return
	}
	// TLS or opaque bytes: to the route's cluster, as TCP.
	cluster := passthroughCluster
	if route.Action != nil {
		if wc := router.PickCluster(route.Action, rand.Uint64()); wc != nil {
			cluster = wc.Name
		}
	}
	if !dst.IsValid() && cluster == passthroughCluster {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		if err != nil || len(ips) == 0 {
			p.tcp.cxConnectFail.Add(1)
			return
		}
		dst = netip.AddrPortFrom(ips[0].Unmap(), uint16(port))
	}
	p.proxyTCP(sc, cluster, dst, nil)
}

package sidecar

import (
	"log/slog"
	"net"
	"net/netip"

	"github.com/trellismesh/trellis/internal/proxy/authz"
	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Authorization (AuthorizationPolicy) on the inbound side. HTTP chains
// carry RBAC HTTP filters, which hcm's authorize step applies per request;
// TCP chains carry network RBAC filters, decided here once per connection
// at accept: a refused connection is closed before a byte reaches the app,
// as Envoy's network RBAC filter closes it. The control plane adds a
// catch-all chain (no destination port) with the workload's policies
// compiled for TCP when any apply: it decides connections to ports no
// service claims, and non-HTTP bytes on an HTTP port, as Istio's
// passthrough and sniffed TCP chains do.

// compileAuthz compiles fc's RBAC filters: the connection manager's for
// an HTTP chain, the network filters for a TCP chain.
func (c *chain) compileAuthz(fc *xdsresource.FilterChain) error {
	filters := fc.RBAC
	var ext *xdsresource.ExtAuthz
	if fc.HTTP != nil {
		filters, ext = fc.HTTP.RBAC, fc.HTTP.ExtAuthz
	}
	e, err := authz.CompileHTTP(filters, ext)
	if err != nil {
		return err
	}
	c.authz = e
	return nil
}

// httpAuthz is hcm.Conn.Authz for a connection served by s for dst: the
// engine of dst's chain as of each request, so that a policy update holds
// for connections already open. Outbound connections have none.
func (p *Proxy) httpAuthz(s *hcm.Server, dst netip.AddrPort) func() *authz.Engine {
	if s != p.inbound {
		return nil
	}
	port := uint32(dst.Port())
	return func() *authz.Engine {
		r := p.routing.Load()
		if ch := r.inbound[port]; ch != nil && ch.routes != nil {
			return ch.authz
		}
		// The chain is gone (the port no longer served) while this
		// connection lives on: the workload's TCP-compiled policies,
		// which never allow more.
		if ch := r.inbound[0]; ch != nil {
			return ch.authz
		}
		return nil
	}
}

// tcpAuthz is the engine for a TCP connection to port: its TCP chain's,
// or for an unclaimed port or non-HTTP bytes on an HTTP port, the
// catch-all chain's. An HTTP chain with policies and no catch-all to
// judge TCP refuses (deny is nil, allow false).
func (p *Proxy) tcpAuthz(port uint32) (e *authz.Engine, ok bool) {
	r := p.routing.Load()
	ch := r.inbound[port]
	all := r.inbound[0]
	if all != nil && all.routes != nil {
		all = nil
	}
	if ch != nil && ch.routes == nil {
		// The workload's policies are the same on every port: a TCP
		// chain without them while the catch-all has them (a chain
		// added for a port only to set its mTLS mode, say) is judged by
		// the catch-all's rather than let through.
		if ch.authz.Empty() && all != nil {
			return all.authz, true
		}
		return ch.authz, true
	}
	if all != nil {
		return all.authz, true
	}
	if ch != nil && !ch.authz.Empty() {
		return nil, false
	}
	return nil, true
}

// allowInboundTCP decides a TCP connection from src (with the peer's
// verified identity and TLS server name, zero for plaintext) to dst, this
// pod's ip:port.
func (p *Proxy) allowInboundTCP(src, dst netip.AddrPort, peer peerIdentity) bool {
	peerID := peer.id
	e, ok := p.tcpAuthz(uint32(dst.Port()))
	if !ok {
		return false
	}
	if e.Empty() {
		return true
	}
	res := e.Check(&authz.Request{Source: src, Dst: dst, PeerID: peerID, SNI: peer.sni})
	if res.Audit != "" {
		slog.Info("authorization audit", "policy", res.Audit, "source", src, "destination", dst, "peer", peerID, "allowed", res.Allowed)
	}
	if !res.Allowed {
		slog.Debug("connection denied by authorization", "filter", res.Filter, "policy", res.Policy, "source", src, "destination", dst, "peer", peerID)
	}
	return res.Allowed
}

// authorizeInboundConn is allowInboundTCP for a connection about to be
// proxied as TCP: a refused one is closed.
func (p *Proxy) authorizeInboundConn(c net.Conn, dst netip.AddrPort, peer peerIdentity) bool {
	if p.allowInboundTCP(remoteAddr(c), dst, peer) {
		return true
	}
	c.Close()
	return false
}

// remoteConn is an in-memory end of a tunnel stream that reports the
// address of the peer that opened the stream, which authorization's
// ipBlocks and X-Forwarded-For read from the connection.
type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

// withRemote gives c the remote address a (left as is when a is unknown).
func withRemote(c net.Conn, a netip.AddrPort) net.Conn {
	if !a.IsValid() {
		return c
	}
	return remoteConn{Conn: c, remote: net.TCPAddrFromAddrPort(a)}
}

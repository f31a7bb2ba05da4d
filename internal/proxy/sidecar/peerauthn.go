package sidecar

import (
	"crypto/tls"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/sniff"
	"github.com/trellismesh/trellis/internal/proxy/tunnel"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// PeerAuthentication on the inbound side. The control plane splits each
// virtualInbound port's chain by transport protocol, as istiod does (see
// translate/peerauthn.go); the proxy reads back what each port accepts:
//
//   - mesh mTLS (a chain terminating TLS, matching Istio's ALPN under
//     PERMISSIVE and any ALPN under STRICT, so a proxyless grpc-go
//     client's h2 is taken there): the proxy terminates it with its own identity on 15006 and the peer's
//     verified SPIFFE ID goes with the connection;
//   - plaintext (a raw_buffer chain, or a chain for any protocol);
//   - the app's own TLS, passed on as it comes.
//
// STRICT leaves only the first: plaintext is closed and counted
// (listener.virtualInbound.no_filter_chain_match, as Envoy names a
// connection no chain takes). The tunnel port is mTLS whenever the proxy
// has an identity, and a tunnel stream counts as mTLS; a plaintext tunnel
// (a proxy without an identity) is held to the same rule.
//
// Explicit mode has no capture: 15006 is not bound, and a local process
// can reach an app port directly, past the sidecar. PeerAuthentication
// there holds for traffic through sidecars, which is all mesh traffic in
// that mode; transparent mode closes the gap.

// inboundPassthroughCluster is the cluster of the chains the control
// plane adds for ports no service claims; the proxy serves it itself.
const inboundPassthroughCluster = "InboundPassthroughCluster"

// portTLS is what one port's inbound chains accept.
type portTLS struct {
	mtls    bool     // a chain terminates mesh mTLS
	alpn    []string // the ALPN that chain matches; empty: any TLS
	plain   bool     // a chain takes plaintext
	passTLS bool     // a chain takes TLS as it comes (the app's own)
}

// open is a port that takes anything and terminates nothing: no
// PeerAuthentication, or DISABLE.
func (pt *portTLS) open() bool { return pt == nil || !pt.mtls && pt.plain && pt.passTLS }

// noteInboundTLS records what virtualInbound chain fc accepts on its port.
func (r *routing) noteInboundTLS(fc *xdsresource.FilterChain) {
	if r.inboundTLS == nil {
		r.inboundTLS = map[uint32]*portTLS{}
	}
	pt := r.inboundTLS[fc.DestinationPort]
	if pt == nil {
		pt = &portTLS{}
		r.inboundTLS[fc.DestinationPort] = pt
	}
	switch {
	case fc.TLS != nil:
		pt.mtls, pt.alpn = true, fc.ApplicationProtocols
	case fc.TransportProtocol == "tls":
		pt.passTLS = true
	case fc.TransportProtocol == "raw_buffer":
		pt.plain = true
	default:
		pt.plain, pt.passTLS = true, true
	}
}

// portTLSFor is what port accepts: its own chains', else those of the
// chains for ports no service claims.
func (r *routing) portTLSFor(port uint16) *portTLS {
	if pt := r.inboundTLS[uint32(port)]; pt != nil {
		return pt
	}
	return r.inboundTLS[0]
}

// mtlsHandshakeTimeout bounds the TLS handshake on 15006, as the tunnel
// port's header timeout bounds its own.
const mtlsHandshakeTimeout = 10 * time.Second

// admitCaptured applies the port's PeerAuthentication to a connection the
// capture sent to 15006: it returns the connection to serve (the
// decrypted stream when it terminated mTLS) and who the peer is, or false
// when it refused and closed it.
func (p *Proxy) admitCaptured(c net.Conn, dst netip.AddrPort) (net.Conn, peerIdentity, bool) {
	pt := p.routing.Load().portTLSFor(dst.Port())
	if pt.open() {
		return c, peerIdentity{}, true
	}
	res, sc, err := sniff.Detect(c, sniff.DefaultTimeout)
	if err != nil {
		c.Close()
		return nil, peerIdentity{}, false
	}
	isTLS := res.Protocol == sniff.TLS
	switch {
	case isTLS && pt.mtls && (len(pt.alpn) == 0 || slices.ContainsFunc(res.ALPN, func(a string) bool { return slices.Contains(pt.alpn, a) })):
		if p.opts.Identity == nil {
			p.refuseInbound(sc, dst, "mutual TLS, but this proxy has no identity to terminate it with")
			return nil, peerIdentity{}, false
		}
		tc := tls.Server(sc, p.inboundTLSConfig())
		tc.SetDeadline(time.Now().Add(mtlsHandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			p.inboundTLSFailures.Add(1)
			p.log.Debug("inbound mTLS handshake failed", "source", c.RemoteAddr(), "destination", dst, "err", err)
			sc.Close()
			return nil, peerIdentity{}, false
		}
		tc.SetDeadline(time.Time{})
		p.inboundTLSHandshakes.Add(1)
		st := tc.ConnectionState()
		return tc, peerOf(&st), true
	case isTLS && pt.passTLS, !isTLS && pt.plain:
		return sc, peerIdentity{}, true
	}
	why := "plaintext, and the port takes mutual TLS only (PeerAuthentication STRICT)"
	if isTLS {
		why = "TLS that is not the mesh's mutual TLS, and the port takes that only (PeerAuthentication STRICT)"
	}
	p.refuseInbound(sc, dst, why)
	return nil, peerIdentity{}, false
}

// refuseInbound closes a connection no inbound chain takes.
func (p *Proxy) refuseInbound(c net.Conn, dst netip.AddrPort, why string) {
	p.inboundNoChain.Add(1)
	p.log.Debug("inbound connection refused", "source", c.RemoteAddr(), "destination", dst, "reason", why)
	c.Close()
}

// admitTunnel applies the target port's PeerAuthentication to a tunnel
// stream: one from a verified peer is mTLS; a plaintext one (the caller
// has no identity, nor has this proxy) is refused where the port takes
// mTLS only.
func (p *Proxy) admitTunnel(target netip.AddrPort, peer tunnel.Peer) bool {
	if peer.TLS != nil {
		return true
	}
	pt := p.routing.Load().portTLSFor(target.Port())
	if pt.open() || pt.plain {
		return true
	}
	p.tunnelNoChain.Add(1)
	p.log.Debug("plaintext tunnel refused", "source", peer.Addr, "destination", target, "reason", "the port takes mutual TLS only (PeerAuthentication STRICT)")
	return false
}

// inboundTLSConfig terminates mesh mTLS on 15006 with the proxy's
// identity. The ALPN chosen is Istio's plain "istio", never
// istio-peer-exchange, whose in-band metadata exchange the proxy does not
// speak.
func (p *Proxy) inboundTLSConfig() *tls.Config {
	p.inboundTLSOnce.Do(func() {
		cfg := certs.ServerConfig(p.opts.Identity, nil)
		cfg.NextProtos = []string{"istio", "h2", "http/1.1"}
		cfg.SessionTicketsDisabled = true
		cfg.DynamicRecordSizingDisabled = true
		p.inboundTLSCfg = cfg
	})
	return p.inboundTLSCfg
}

// peerAuthnStats adds the inbound side's PeerAuthentication counters.
func (p *Proxy) peerAuthnStats(add func(string, uint64)) {
	add("listener.virtualInbound.no_filter_chain_match", p.inboundNoChain.Load())
	add("listener.virtualInbound.ssl.handshake", p.inboundTLSHandshakes.Load())
	add("listener.virtualInbound.ssl.connection_error", p.inboundTLSFailures.Load())
	add("listener.tunnel.no_filter_chain_match", p.tunnelNoChain.Load())
}

package sidecar

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"net/netip"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/certs"
)

// Mesh mTLS between sidecars. With an identity (Options.Identity) a
// sidecar reaches every endpoint that runs a sidecar (tlsMode istio)
// through that pod's tunnel port inside mTLS, in explicit and transparent
// mode alike, and its own tunnel port takes mTLS only. The inbound side
// then knows the caller's verified SPIFFE ID (peerIdentity), which
// authorization and X-Forwarded-Client-Cert use.

// peerIdentity is the verified identity of who sent an inbound connection;
// zero for plaintext.
type peerIdentity struct {
	id       string // SPIFFE ID
	certHash string // hex SHA-256 of the leaf's DER
}

func peerOf(st *tls.ConnectionState) peerIdentity {
	if st == nil || len(st.PeerCertificates) == 0 {
		return peerIdentity{}
	}
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	return peerIdentity{id: certs.PeerID(st), certHash: hex.EncodeToString(sum[:])}
}

// ownID is the proxy's SPIFFE ID as read from one certificate: parsed
// once per certificate (a rotation brings a new one), not per request.
type ownID struct {
	cert *tls.Certificate
	id   string
}

// localID is the proxy's own SPIFFE ID; "" without an identity or before
// a certificate is issued.
func (p *Proxy) localID() string {
	if p.opts.Identity == nil {
		return ""
	}
	c, err := p.opts.Identity.Certificate()
	if err != nil || c == nil {
		return ""
	}
	if o := p.own.Load(); o != nil && o.cert == c {
		return o.id
	}
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	id := ""
	if leaf != nil {
		id = certs.SPIFFEID(leaf)
	}
	p.own.Store(&ownID{cert: c, id: id})
	return id
}

// trustDomain is the trust domain of the proxy's own SPIFFE ID, which its
// peers in the mesh share; "" before a certificate is issued.
func (p *Proxy) trustDomain() string {
	u, err := certs.ParseSPIFFEID(p.localID())
	if err != nil {
		return ""
	}
	return u.Host
}

// expectedPeer is who an endpoint must prove to be: the SPIFFE IDs of the
// cluster's UpstreamTlsContext SAN list when it has one (the service
// accounts of every endpoint of the service, or a ServiceEntry's
// subjectAltNames, as Istio sends them), else the endpoint's own
// namespace and service account in our trust domain. nil accepts any
// identity the roots vouch for, as Istio does for a destination that
// names none.
func (p *Proxy) expectedPeer(sans []string, h *balance.Host) func(string) bool {
	if len(sans) > 0 {
		return func(id string) bool {
			for _, s := range sans {
				if s == id {
					return true
				}
			}
			return false
		}
	}
	if h.Namespace == "" || h.ServiceAccount == "" {
		return nil
	}
	td := p.trustDomain()
	if td == "" {
		td = "cluster.local"
	}
	want := "spiffe://" + td + "/ns/" + h.Namespace + "/sa/" + h.ServiceAccount
	return func(id string) bool { return id == want }
}

// dialMesh opens an upstream connection to h, a host with a sidecar,
// through its pod's tunnel port: one HTTP/1.1 CONNECT tunnel, inside mTLS
// when the proxy has an identity, per pooled upstream connection, so a
// handshake is paid once per connection, not per request.
func (p *Proxy) dialMesh(ctx context.Context, h *balance.Host, a netip.Addr, sans []string) (net.Conn, error) {
	var cfg *tls.Config
	if p.opts.Identity != nil {
		cfg = certs.ClientConfig(p.opts.Identity, p.expectedPeer(sans, h))
	}
	return p.tunnelDialer.DialHTTP1TLS(ctx, netip.AddrPortFrom(a, TunnelPort), h.Addr(), nil, cfg)
}

// tlsStats adds the tunnel's handshake counters, by Envoy's ssl. names:
// the tunnel listener's (server side) and the tunnel dialer's.
func (p *Proxy) tlsStats(add func(string, uint64)) {
	if s := p.tunnelServer; s != nil {
		st := s.Stats()
		add("listener.tunnel.ssl.handshake", st.Handshakes)
		add("listener.tunnel.ssl.connection_error", st.HandshakeFailures)
	}
	if d := p.tunnelDialer; d != nil {
		st := d.Stats()
		add("tunnel.upstream.ssl.handshake", st.Handshakes)
		add("tunnel.upstream.ssl.connection_error", st.HandshakeFailures)
	}
}

package sidecar

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/telemetry/metrics"
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
	sni      string // the server name the handshake asked for (connection.sni)
	// What a tunnel's CONNECT said (tunnelPeer): the caller's workload
	// and the service it addressed, for telemetry.
	meta    *metrics.Peer
	service string
}

func peerOf(st *tls.ConnectionState) peerIdentity {
	if st == nil {
		return peerIdentity{}
	}
	if len(st.PeerCertificates) == 0 {
		return peerIdentity{sni: st.ServerName}
	}
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	return peerIdentity{id: certs.PeerID(st), certHash: hex.EncodeToString(sum[:]), sni: st.ServerName}
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

// clusterDialer dials a host of cluster xc as its TLS settings say:
//
//   - mesh mTLS (auto mTLS for a tlsMode istio endpoint, or
//     ISTIO_MUTUAL): through the pod's tunnel port, in mTLS with the
//     proxy's identity. Without an identity, explicit mode still tunnels
//     (in plaintext, as before the mesh had a CA) and transparent mode
//     dials the endpoint;
//   - TLS origination (SIMPLE, MUTUAL): straight to the endpoint, in TLS
//     with the files the DestinationRule names;
//   - no TLS (plaintext endpoints, DISABLE): straight to the endpoint.
func (p *Proxy) clusterDialer(xc *xdsresource.Cluster, local net.IP) func(ctx context.Context, h *balance.Host) (net.Conn, error) {
	tunnel := p.opts.Mode == Explicit || p.opts.Identity != nil
	var header http.Header
	if xc != nil {
		header = p.tunnelHeader(metrics.ClusterService(xc.Name))
	}
	return func(ctx context.Context, h *balance.Host) (net.Conn, error) {
		var ut *xdsresource.UpstreamTLS
		if xc != nil {
			ut = xc.TLSFor(h.TLSMode)
		}
		if ut != nil && ut.Mesh && h.Proxyless && p.opts.Identity != nil {
			// A proxyless gRPC server has no tunnel port (proxyless.go).
			return p.dialProxyless(ctx, h, local, ut.SANs)
		}
		if ut != nil && ut.Mesh && tunnel && !h.Proxyless {
			a, err := netip.ParseAddr(h.Address)
			if err != nil {
				return nil, fmt.Errorf("mesh mTLS to %s: the endpoint is not a pod IP, so it has no tunnel port to reach", h.Addr())
			}
			// One HTTP/1.1 CONNECT tunnel per pooled upstream
			// connection: raw bytes after the handshake (see
			// tunnel/h1.go for why not HTTP/2 here).
			return p.dialMesh(ctx, h, a, ut, header)
		}
		d := net.Dialer{}
		if local != nil {
			d.LocalAddr = &net.TCPAddr{IP: local}
		}
		c, err := d.DialContext(ctx, "tcp", h.Addr())
		if err != nil || ut == nil || ut.Mesh {
			return c, err
		}
		return p.originateTLS(ctx, c, h, ut)
	}
}

// originateTLS runs a DestinationRule SIMPLE or MUTUAL handshake on c.
// The files are read at each handshake, so replacing them applies to the
// next connection.
func (p *Proxy) originateTLS(ctx context.Context, c net.Conn, h *balance.Host, ut *xdsresource.UpstreamTLS) (net.Conn, error) {
	cfg, err := originationConfig(ut, h)
	if err != nil {
		c.Close()
		return nil, err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		p.originationFailures.Add(1)
		c.Close()
		return nil, fmt.Errorf("TLS to %s: %w", h.Addr(), err)
	}
	p.originationHandshakes.Add(1)
	return tc, nil
}

func originationConfig(ut *xdsresource.UpstreamTLS, h *balance.Host) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: ut.SNI, NextProtos: ut.ALPN}
	if cfg.ServerName == "" {
		if _, err := netip.ParseAddr(h.Address); err != nil {
			cfg.ServerName = h.Address
		}
	}
	if ut.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(ut.CertFile, ut.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("the DestinationRule's clientCertificate/privateKey (%s, %s): %w", ut.CertFile, ut.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	var roots *x509.CertPool
	switch {
	case ut.CAFile != "":
		pem, err := os.ReadFile(ut.CAFile)
		if err != nil {
			return nil, fmt.Errorf("the DestinationRule's caCertificates: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the DestinationRule's caCertificates %s: no PEM certificate in it", ut.CAFile)
		}
	case ut.SystemRoots:
		var err error
		if roots, err = x509.SystemCertPool(); err != nil {
			return nil, fmt.Errorf("the system's trust store: %w", err)
		}
	}
	var rev *revocation
	if ut.CRLFile != "" {
		var err error
		if rev, err = loadRevocation(ut.CRLFile); err != nil {
			return nil, err
		}
	}
	// Verified here rather than by crypto/tls: subject alt names are any
	// of a list, URI or DNS, and without a CA Envoy checks nothing.
	cfg.InsecureSkipVerify = true
	sans, host := ut.SANs, cfg.ServerName
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if roots == nil && len(sans) == 0 {
			return nil // insecureSkipVerify
		}
		if len(raw) == 0 {
			return errors.New("the server sent no certificate")
		}
		chain := make([]*x509.Certificate, len(raw))
		for i, b := range raw {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return fmt.Errorf("the server's certificate %d: %w", i, err)
			}
			chain[i] = c
		}
		leaf := chain[0]
		if roots != nil {
			inter := x509.NewCertPool()
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
			chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			if err != nil {
				return fmt.Errorf("the server's certificate: %w", err)
			}
			if err := rev.checkChains(chains); err != nil {
				return err
			}
		}
		switch {
		case len(sans) > 0:
			for _, want := range sans {
				if slices.Contains(leaf.DNSNames, want) {
					return nil
				}
				for _, u := range leaf.URIs {
					if u.String() == want {
						return nil
					}
				}
			}
			return fmt.Errorf("the server's certificate has none of the subject alt names %v", sans)
		case host != "":
			return leaf.VerifyHostname(host)
		}
		return nil
	}
	return cfg, nil
}

// dialMesh opens an upstream connection to h, a host with a sidecar,
// through its pod's tunnel port: one HTTP/1.1 CONNECT tunnel, inside mTLS
// when the proxy has an identity, per pooled upstream connection, so a
// handshake is paid once per connection, not per request. The handshake
// asks for the cluster's SNI as Istio's sidecars do
// (outbound_.PORT_.SUBSET_.HOST), which the server side's connection.sni
// conditions see.
func (p *Proxy) dialMesh(ctx context.Context, h *balance.Host, a netip.Addr, ut *xdsresource.UpstreamTLS, header http.Header) (net.Conn, error) {
	var cfg *tls.Config
	if p.opts.Identity != nil {
		cfg = certs.ClientConfig(p.opts.Identity, p.expectedPeer(ut.SANs, h))
		cfg.ServerName = ut.SNI
	}
	return p.tunnelDialer.DialHTTP1TLS(ctx, netip.AddrPortFrom(a, TunnelPort), h.Addr(), header, cfg)
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
	p.peerAuthnStats(add)
	add("upstream.origination.ssl.handshake", p.originationHandshakes.Load())
	add("upstream.origination.ssl.connection_error", p.originationFailures.Load())
	add("upstream.proxyless.ssl.handshake", p.proxylessHandshakes.Load())
	add("upstream.proxyless.ssl.connection_error", p.proxylessFailures.Load())
}

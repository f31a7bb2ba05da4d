package sidecar

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/balance"
	"github.com/trellismesh/trellis/internal/proxy/certs"
)

// Proxyless gRPC endpoints. A workload running proxyless gRPC (marked by
// the control plane, endpoint metadata trellis.proxyless, from Istio's
// inject.istio.io/templates: grpc-agent annotation) terminates mesh mTLS
// in grpc-go itself, on its own port, and has no tunnel port. With an
// identity the sidecar reaches such an endpoint as Istio's Envoy reaches
// every meshed endpoint: a direct TLS 1.3 connection presenting the
// workload certificate, checking the server's SPIFFE ID as for a tunnel,
// and offering ALPN h2, which grpc-go servers require (they refuse a
// connection that negotiated none). Without an identity the endpoint is
// dialled in plaintext, as a plaintext tunnel would be.
//
// The other direction needs nothing here: a grpc-go client's mTLS offers
// only h2, and the STRICT chain terminates mTLS whatever the ALPN, as
// istiod builds it (translate/peerauthn.go). PERMISSIVE keeps Istio's
// ALPN-matched chain, so grpc-go's mTLS is not taken there; the control
// plane sends proxyless clients plaintext to such a port instead.

// proxylessHandshakeTimeout bounds the TLS handshake with a proxyless
// server when the caller's context has no earlier deadline.
const proxylessHandshakeTimeout = 10 * time.Second

// dialProxyless opens an mTLS connection straight to h, a proxyless gRPC
// endpoint, from local when set.
func (p *Proxy) dialProxyless(ctx context.Context, h *balance.Host, local net.IP, sans []string) (net.Conn, error) {
	d := net.Dialer{}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	c, err := d.DialContext(ctx, "tcp", h.Addr())
	if err != nil {
		return nil, err
	}
	cfg := certs.ClientConfig(p.opts.Identity, p.expectedPeer(sans, h))
	cfg.NextProtos = []string{"h2"}
	cfg.DynamicRecordSizingDisabled = true
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, proxylessHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		p.proxylessFailures.Add(1)
		c.Close()
		return nil, fmt.Errorf("mesh mTLS to proxyless gRPC endpoint %s: %w", h.Addr(), err)
	}
	p.proxylessHandshakes.Add(1)
	return tc, nil
}

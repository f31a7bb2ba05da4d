package sidecar

import (
	"net/netip"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// httpPaths is the path normalization of an HTTP connection to dst served
// by s: on the inbound side its chain's connection manager's, read per
// request like its authorization, so a mesh config change holds for open
// connections; on the outbound side the outbound listeners'.
func (p *Proxy) httpPaths(s *hcm.Server, dst netip.AddrPort) func() xdsresource.PathNormalization {
	if s != p.inbound {
		return p.outboundPaths
	}
	port := uint32(dst.Port())
	return func() xdsresource.PathNormalization {
		if ch := p.routing.Load().inbound[port]; ch != nil && ch.routes != nil {
			return ch.paths
		}
		return xdsresource.PathNormalization{}
	}
}

// outboundPaths is the outbound listeners' path normalization. Istio sets
// it from MeshConfig on every connection manager alike, so the forward
// proxy, which picks its route table per request, uses it for all.
func (p *Proxy) outboundPaths() xdsresource.PathNormalization {
	return p.routing.Load().outboundPaths
}

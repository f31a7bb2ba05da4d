package sidecar

import (
	"net/netip"

	"github.com/trellismesh/trellis/internal/proxy/hcm"
	"github.com/trellismesh/trellis/internal/proxy/jwtauthn"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Request authentication (RequestAuthentication) on the inbound side:
// an HTTP chain's jwt_authn filter, compiled with the proxy's remote JWKS
// cache (p.jwks, which outlives config updates so a jwksUri the new
// config still names keeps its keys), and verified by hcm's authenticate
// step per request.

// compileJWT compiles fc's jwt_authn filter, nil without one.
func (r *routing) compileJWT(fc *xdsresource.FilterChain) *jwtauthn.Filter {
	if fc.HTTP == nil || fc.HTTP.JWT == nil {
		return nil
	}
	return jwtauthn.New(fc.HTTP.JWT, r.jwks, jwtauthn.Options{Log: r.log})
}

// httpJWT is hcm.Conn.JWT for a connection served by s for dst: the
// filter of dst's chain as of each request, so that a policy update holds
// for connections already open. Outbound connections have none.
func (p *Proxy) httpJWT(s *hcm.Server, dst netip.AddrPort) func() *jwtauthn.Filter {
	if s != p.inbound {
		return nil
	}
	port := uint32(dst.Port())
	return func() *jwtauthn.Filter {
		if ch := p.routing.Load().inbound[port]; ch != nil {
			return ch.jwt
		}
		return nil
	}
}

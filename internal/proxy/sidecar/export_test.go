package sidecar

import (
	"net"
	"net/netip"
)

// ServeCaptured serves c as a connection the capture redirected to the
// outbound port with original destination dst, for tests of transparent
// dispatch that cannot set up capture.
func (p *Proxy) ServeCaptured(c net.Conn, dst netip.AddrPort) { p.serveCapturedOutbound(c, dst) }

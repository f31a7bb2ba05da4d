package sidecar

import (
	"net"
	"net/netip"
)

// ServeCapturedInbound serves c as a connection the capture redirected to
// the inbound port (15006) with original destination dst, for tests of
// PeerAuthentication that cannot set up capture.
func (p *Proxy) ServeCapturedInbound(c net.Conn, dst netip.AddrPort) { p.serveCapturedInbound(c, dst) }

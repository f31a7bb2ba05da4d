package sidecar

import (
	"net/netip"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/authz"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Which engine judges a TCP connection: its port's TCP chain's; for an
// unclaimed port, the catch-all chain's; and for a TCP chain that lacks
// the workload's policies while the catch-all has them (a chain added for
// a port only to set its mTLS mode), the catch-all's, never nothing.
func TestTCPAuthzEngineChoice(t *testing.T) {
	denyAll, err := authz.Compile([]*xdsresource.RBAC{{Name: "allow", Action: xdsresource.RBACAllow}})
	if err != nil {
		t.Fatal(err)
	}
	tcp := &xdsresource.TCPProxy{Cluster: "c"}
	src := netip.MustParseAddrPort("10.0.0.1:5000")
	at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), port) }
	for _, tc := range []struct {
		name    string
		inbound map[uint32]*chain
		port    uint16
		want    bool
	}{
		{"no policies", map[uint32]*chain{9000: {tcp: tcp}}, 9000, true},
		{"the port's chain", map[uint32]*chain{9000: {tcp: tcp, authz: denyAll}}, 9000, false},
		{"unclaimed port, catch-all", map[uint32]*chain{0: {tcp: tcp, authz: denyAll}}, 9001, false},
		{"chain without the policies, catch-all with them", map[uint32]*chain{9000: {tcp: tcp}, 0: {tcp: tcp, authz: denyAll}}, 9000, false},
	} {
		p := &Proxy{}
		p.routing.Store(&routing{inbound: tc.inbound})
		if got := p.allowInboundTCP(src, at(tc.port), peerIdentity{}); got != tc.want {
			t.Errorf("%s: allowed %v, want %v", tc.name, got, tc.want)
		}
	}
}

//go:build linux

package origdst_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/origdst"
)

// Recovery through real capture rules is tested where the rules are
// installed: internal/redirect's TestCaptureInNetns and
// cmd/trellis-proxy's transparent mesh.
func TestOriginalDstWithoutRedirect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// With conntrack loaded the answer is the real destination; without, a clear error.
	got, err := origdst.Get(s.(*net.TCPConn))
	if err == nil && got != netip.MustParseAddrPort(ln.Addr().String()) {
		t.Errorf("OriginalDst = %s, want %s", got, ln.Addr())
	}
}

//go:build !linux

package origdst

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
)

// Get fails off Linux: transparent capture is nftables and conntrack.
// It exists so callers stay portable and fail with a reason.
func Get(*net.TCPConn) (netip.AddrPort, error) {
	return netip.AddrPort{}, fmt.Errorf("origdst: the original destination needs Linux (conntrack), not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

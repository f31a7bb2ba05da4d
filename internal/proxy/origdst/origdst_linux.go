//go:build linux

package origdst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h, which
// golang.org/x/sys/unix does not define.
const ip6tSOOriginalDst = 80

// Get returns where a captured connection was headed before REDIRECT rewrote it, as
// conntrack remembers it. The connection must have been accepted by a listener the capture
// rules redirect to.
func Get(conn *net.TCPConn) (netip.AddrPort, error) {
	local, ok := conn.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, errors.New("origdst: connection has no local TCP address")
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	// A dual-stack listener sees IPv4 clients as v4-mapped; conntrack keys them as IPv4.
	v4 := local.AddrPort().Addr().Unmap().Is4()
	var got netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		if v4 {
			var sa unix.RawSockaddrInet4
			serr = getsockopt(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), unsafe.Sizeof(sa))
			got = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port(sa.Port))
			return
		}
		var sa unix.RawSockaddrInet6
		serr = getsockopt(fd, unix.SOL_IPV6, ip6tSOOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa))
		got = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port(sa.Port))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return netip.AddrPort{}, fmt.Errorf("origdst: no original destination for %s (the connection was not redirected, or conntrack is not tracking it): %w", conn.RemoteAddr(), err)
		}
		return netip.AddrPort{}, fmt.Errorf("origdst: SO_ORIGINAL_DST: %w", err)
	}
	return got, nil
}

// port reads a sockaddr port, which the kernel stores in network byte order.
func port(p uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p))[:])
}

func getsockopt(fd uintptr, level, name int, val unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(name), uintptr(val), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

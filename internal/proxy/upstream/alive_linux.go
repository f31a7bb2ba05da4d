package upstream

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// closedByPeer reports whether the upstream has closed (or reset) an idle
// connection, with one non-blocking peek. net/http's Transport learns this
// from the read loop it keeps on every idle connection; the direct path has
// no such goroutine, so it asks the kernel before reusing a connection that
// sat idle long enough for the upstream to have given up on it. Unsolicited
// bytes on an idle HTTP/1.1 connection make it unusable too.
func closedByPeer(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	dead := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case rerr == unix.EAGAIN || rerr == unix.EWOULDBLOCK:
		case rerr != nil, n >= 0:
			dead = true
		}
		return true // never wait
	})
	return dead || err != nil
}

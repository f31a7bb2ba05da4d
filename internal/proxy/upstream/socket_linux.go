package upstream

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setKeepaliveRaw sets keepalive on a socket known only by its file
// descriptor, as net's SetKeepAliveConfig does on a *net.TCPConn.
func setKeepaliveRaw(s syscall.Conn, cfg net.KeepAliveConfig) bool {
	rc, err := s.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		set := func(level, opt, v int) {
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), level, opt, v)
			}
		}
		set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		if cfg.Idle > 0 {
			set(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(cfg.Idle/time.Second))
		}
		if cfg.Interval > 0 {
			set(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(cfg.Interval/time.Second))
		}
		if cfg.Count > 0 {
			set(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, cfg.Count)
		}
	})
	return err == nil && serr == nil
}

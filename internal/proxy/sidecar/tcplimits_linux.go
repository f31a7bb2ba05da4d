package sidecar

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// kernelIdle says whether socketIdle can ask the kernel.
const kernelIdle = true

// socketIdle is how long since the socket last sent or received data, as
// the kernel keeps it (TCP_INFO's last_data_sent and last_data_recv): a
// proxied connection's bytes cross its sockets both ways, even when the
// copy splices them without passing through the proxy. A socket the
// kernel cannot say this of counts as active.
func socketIdle(s syscall.Conn) time.Duration {
	rc, err := s.SyscallConn()
	if err != nil {
		return 0
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		return 0
	}
	ms := min(info.Last_data_recv, info.Last_data_sent)
	return time.Duration(ms) * time.Millisecond
}

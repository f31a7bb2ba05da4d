//go:build !linux

package upstream

import (
	"net"
	"syscall"
)

// setKeepaliveRaw is Linux's only: elsewhere a socket under a wrapper
// keeps the kernel's keepalive settings.
func setKeepaliveRaw(syscall.Conn, net.KeepAliveConfig) bool { return false }

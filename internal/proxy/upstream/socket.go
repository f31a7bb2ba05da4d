package upstream

import (
	"net"
	"syscall"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Socket returns the TCP socket under c, looking through this package's
// connections, a tunnel's TLS and a replay of bytes read ahead (anything
// with a NetConn method), or nil when there is none to be found (a pipe,
// a stream multiplexed with others).
func Socket(c net.Conn) syscall.Conn {
	for range 8 { // wrappers are few; a cycle must not hang us
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case *tcpConn:
			c = v.conn.Conn
		case *conn:
			c = v.Conn
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		case syscall.Conn:
			return v
		default:
			return nil
		}
	}
	return nil
}

// keepaliveConfig is Envoy's tcp_keepalive for net's dialer: SO_KEEPALIVE
// on, and each unset attribute left to the kernel (-1), as Envoy leaves
// it.
func keepaliveConfig(ka *xdsresource.TCPKeepalive) net.KeepAliveConfig {
	cfg := net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	if ka.Time > 0 {
		cfg.Idle = time.Duration(ka.Time) * time.Second
	}
	if ka.Interval > 0 {
		cfg.Interval = time.Duration(ka.Interval) * time.Second
	}
	if ka.Probes > 0 {
		cfg.Count = int(ka.Probes)
	}
	return cfg
}

// setKeepalive applies cfg to the socket under c, when one can be found:
// connections made by a dial hook (a tunnel, TLS origination) are set
// after the dial. It reports whether it could.
func setKeepalive(c net.Conn, cfg net.KeepAliveConfig) bool {
	s := Socket(c)
	if s == nil {
		return false
	}
	if tc, ok := s.(*net.TCPConn); ok {
		return tc.SetKeepAliveConfig(cfg) == nil
	}
	return setKeepaliveRaw(s, cfg)
}

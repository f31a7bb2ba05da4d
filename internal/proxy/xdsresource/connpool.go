package xdsresource

import "time"

// What istiod makes of a DestinationRule's connectionPool beyond limits and
// timeouts: TCP keepalive on upstream sockets, a maximum connection age,
// HTTP/2 stream limits and keepalive pings, and the TCP proxy's idle and
// age limits. Each is decoded here; what the proxy cannot honour of the
// messages they sit in is refused by path.

// defaultTCPIdleTimeout is Envoy's tcp_proxy idle_timeout when the filter
// sets none: a proxied TCP connection with no bytes either way for an hour
// is closed.
const defaultTCPIdleTimeout = time.Hour

// TCPIdleTimeout is how long a connection through t may stay idle; 0 for
// no limit.
func (t *TCPProxy) TCPIdleTimeout() time.Duration {
	switch {
	case t.NoIdleTimeout:
		return 0
	case t.IdleTimeout == 0:
		return defaultTCPIdleTimeout
	}
	return t.IdleTimeout
}

// TCPKeepalive turns SO_KEEPALIVE on for a cluster's upstream sockets
// (Envoy's upstream_connection_options.tcp_keepalive). A zero field keeps
// the kernel's default for it, as in Envoy.
type TCPKeepalive struct {
	Probes   uint32 // TCP_KEEPCNT
	Time     uint32 // TCP_KEEPIDLE, seconds
	Interval uint32 // TCP_KEEPINTVL, seconds
}

// HTTP2Keepalive is Http2ProtocolOptions.connection_keepalive: a PING
// every Interval, and the connection closed when one is not answered
// within Timeout.
type HTTP2Keepalive struct {
	Interval time.Duration
	Timeout  time.Duration
}

// decodeUpstreamConnectionOptions reads Cluster.upstream_connection_options.
func decodeUpstreamConnectionOptions(b []byte, c *Cluster) error {
	m := msg{b: b, varints: 1 << 2}
	for m.next() {
		switch m.num {
		case 1:
			kb, ok := m.bytes()
			if !ok {
				break
			}
			ka := &TCPKeepalive{}
			k := msg{b: kb}
			for k.next() {
				switch k.num {
				case 1:
					ka.Probes = k.wrappedUint32("keepalive_probes")
				case 2:
					ka.Time = k.wrappedUint32("keepalive_time")
				case 3:
					ka.Interval = k.wrappedUint32("keepalive_interval")
				}
			}
			m.fail(k.err, "tcp_keepalive")
			c.TCPKeepalive = ka
		case 2:
			if m.bool() {
				m.fail(errNotSupported, "set_local_interface_name_on_upstream_connections")
			}
		case 3:
			m.fail(errNotSupported, "happy_eyeballs_config")
		}
	}
	return m.err
}

// decodeHTTP2Options reads an Http2ProtocolOptions: the stream limit per
// connection and keepalive pings. The rest (windows, frame limits) are
// Envoy's tuning of its own codec, which Go's HTTP/2 does its way.
func decodeHTTP2Options(b []byte, c *Cluster) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 2:
			c.MaxConcurrentStreams = m.wrappedUint32("max_concurrent_streams")
		case 15:
			kb, ok := m.bytes()
			if !ok {
				break
			}
			ka, err := decodeHTTP2Keepalive(kb)
			m.fail(err, "connection_keepalive")
			c.HTTP2Keepalive = ka
		}
	}
	return m.err
}

// decodeHTTP2Keepalive reads a KeepaliveSettings, which Envoy validates:
// a timeout of at least 1ms, and an interval of at least 1ms when set.
// Pings only after an idle spell (connection_idle_interval) are not
// supported.
func decodeHTTP2Keepalive(b []byte) (*HTTP2Keepalive, error) {
	ka := &HTTP2Keepalive{}
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			ka.Interval = m.duration("interval")
		case 2:
			ka.Timeout = m.duration("timeout")
		case 4:
			m.fail(errNotSupported, "connection_idle_interval")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if ka.Timeout < time.Millisecond {
		return nil, within(errorf("must be at least 1ms"), "timeout")
	}
	if ka.Interval == 0 {
		// Envoy sends no interval pings then; there is nothing to do.
		return nil, nil
	}
	if ka.Interval < time.Millisecond {
		return nil, within(errorf("must be at least 1ms"), "interval")
	}
	return ka, nil
}

// decodeDownstreamHTTPConfig reads use_downstream_protocol_config: the
// HTTP/2 options for requests that arrived over HTTP/2.
func decodeDownstreamHTTPConfig(b []byte, c *Cluster) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 2:
			if hb, ok := m.bytes(); ok {
				m.fail(decodeHTTP2Options(hb, c), "http2_protocol_options")
			}
		case 3:
			m.fail(errNotSupported, "http3_protocol_options")
		}
	}
	return m.err
}

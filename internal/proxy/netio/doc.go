// Package netio is the proxy's byte-level connection I/O, below any
// protocol: raw read(2)/write(2) through the runtime's poller (RawIO, the
// hot path's reads and writes), and connections that serve bytes read
// ahead before their own (Replay), which protocol detection, the tunnel
// and the HTTP/1.1 fast path's hand-off to net/http all need. It knows no
// protocol and imports nothing of the proxy, so every layer above may use
// it.
package netio

// Package tunnel carries TCP streams between sidecars over the tunnel port
// (15008), the shape of Istio's HBONE: the client proxy asks the server
// pod's tunnel for `CONNECT ip:port`, and the server proxy authorises the
// target and hands the stream to the pod's inbound side or dials the app.
//
// Two framings share the port, told apart by their first bytes:
//
//   - HTTP/1.1 CONNECT, one raw stream per connection after the 200. This is
//     what sidecars dial: one tunnel per pooled upstream connection, which
//     keep-alive makes long-lived, so a tunnel costs no per-request framing
//     or goroutine hand-offs, and TCP half-close passes through
//     (docs/architecture.md says why this won over HTTP/2 here).
//   - HTTP/2 CONNECT streams (HBONE), many per connection, for peers that
//     speak it; net/http's own HTTP/2 (Go 1.26) serves them full duplex.
//
// Both are h2c/plaintext until the security issue puts mTLS around each
// tunnel connection (the TLS hooks are in place).
package tunnel

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
// With a TLS config (the sidecar's, when it has a workload identity) the
// port takes mutual TLS only and both framings run inside it: the server
// hands the peer's verified certificate to Authorize, Handle and
// DialPeer, and a client checks the server's SPIFFE ID against the
// identities the destination is expected to have (DialHTTP1TLS takes that
// check per dial). A tunnel connection is one handshake for as long as
// the connection is pooled; the counters are in Stats.
package tunnel

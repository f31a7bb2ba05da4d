// Package http1 is the proxy's HTTP/1.1 wire layer: what it reads and
// writes of the protocol itself, apart from any policy about the
// messages. It parses request heads (the downstream fast path) and
// response heads (the upstream direct path) into net/http's types the way
// net/http would; follows a request stream's framing (heads,
// Content-Length and chunked bodies, trailers) as net/http reads it, which
// the connection manager's smuggling guard compares with what net/http
// served; follows response heads on the Transport's connections; and
// keeps the spelling of header names (header case) across hops.
//
// It imports nothing of the proxy: the connection manager (hcm) and the
// upstream pools (upstream) both build on it, and neither is needed to
// test it.
package http1

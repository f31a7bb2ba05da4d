// Package hcm is the sidecar's HTTP connection manager (Envoy's name for
// it): it serves downstream HTTP/1.1 and h2c connections and forwards each
// request along its route to an upstream cluster, as a correct HTTP proxy
// (hop-by-hop headers, X-Forwarded-*, X-Request-Id, trailers, upgrades,
// streaming both ways) with Envoy's limits and response flags.
//
// Connections arrive already accepted and classified by the proxy's
// listeners; one Server serves every connection of one kind (outbound,
// inbound). Each starts on a fast path of its own for plain HTTP/1.1
// (fast.go) and moves to net/http's server at its first request that
// needs more (h2c, upgrades, CONNECT, 100-continue, chunked bodies). Both
// feed the same request path (forward.go): named steps over one
// per-request exchange, which never ask which front end they serve. What
// the package knows of HTTP/1.1 bytes (head parsing, framing, header case)
// is internal/proxy/http1's; hcm decides what to do with a request. Which
// route table applies is resolved per request from the live config, so a
// route update reaches keep-alive connections without closing them.
package hcm

// Package upstream manages a cluster's connections to its upstream hosts:
// it picks a host with the cluster's balancer, enforces the cluster's
// circuit breakers (UO), dials from the proxy's own address or through a
// peer's tunnel (UF), sends each request and reports Envoy's response
// flags.
//
// Ordinary HTTP/1.1 requests (no body, or a small one of known length, no
// Expect, no upgrade) take the direct path (direct.go): the caller's
// goroutine writes head and body in one write and reads the answer itself,
// over per-host keep-alive connections this package pools. Everything else
// (streamed or large bodies, 100-continue, upgrades, h2c) goes through a
// net/http Transport per host, so a removed host's connections drain on
// their own. What the connection manager tells a cluster about a request,
// and learns back, is an explicit Call (hash, original destination, header
// spelling), not context values. Parsing HTTP/1.1 bytes is http1's.
package upstream

// Package listener is the proxy's listening side, the same for both
// interception modes: it binds a port, accepts connections, learns where
// each was headed (SO_ORIGINAL_DST for captured traffic, the local address
// otherwise), enforces the listener's connection limit and hands each
// connection to a handler on its own goroutine. It keeps every handler
// accounted for, so a drain can stop accepting, wait for what is in flight
// (bounded) and then close the rest.
//
// Which ports are bound follows the sidecar contract (ARCHITECTURE.md,
// "Ports"): in explicit mode the pod IP's 15001 (forward proxy) and 15008
// (tunnel); in transparent mode 15001 and 15006 on every address, the
// nftables capture sending traffic there.
package listener

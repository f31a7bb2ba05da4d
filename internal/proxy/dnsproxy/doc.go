// Package dnsproxy is the sidecar's DNS proxy (Istio's DNS proxying,
// ISTIO_META_DNS_CAPTURE): with DNS capture on, the pod's nftables rules
// send the app's DNS queries (UDP and TCP port 53) to it on 127.0.0.1:15053.
// It answers A and AAAA queries for the names the proxy's xDS config knows
// (Service hostnames and their short forms with their VIPs, ServiceEntry
// hosts with addresses) from a Table that the sidecar swaps on every config
// apply, and forwards every other query to the pod's real nameserver,
// relaying the answer. Its own forwards leave with the proxy's identity
// (gid 1337), which the capture rules let through, so they never loop.
package dnsproxy

// Package redirect builds the nftables rules that capture a pod's TCP traffic for its sidecar
// (transparent mode), and optionally its DNS queries, and on Linux installs them.
//
// The rules follow Istio's iptables capture (istio-iptables, REDIRECT mode) so that apps behave
// the same under Trellis as under Istio. The chain names map one to one:
//
//	prerouting (nat PREROUTING) → trellis-inbound (ISTIO_INBOUND)
//	output     (nat OUTPUT)     → trellis-output  (ISTIO_OUTPUT)
//	trellis-redirect    (ISTIO_REDIRECT)     redirect to the outbound port (15001)
//	trellis-in-redirect (ISTIO_IN_REDIRECT)  redirect to the inbound port (15006)
//	trellis-dns         (ISTIO_OUTPUT's DNS rules, with DNS capture on) redirect the app's
//	                    DNS (UDP and TCP port 53) to the proxy's DNS port (15053)
//
// Build is pure: it turns a Config into a Ruleset, a small typed description whose String form
// is `nft -f` input (for people, docs and golden tests) and which Apply sends to the kernel in
// one netlink batch. Everything lives in one inet table named by the caller, so two meshes (or
// parallel tests) in one network namespace never touch each other's rules.
package redirect

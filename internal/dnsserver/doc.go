// Package dnsserver serves DNS messages over UDP and TCP for a handler that
// knows what to answer: it owns the sockets, RFC 7766 framing on TCP,
// connection limits, idle and write deadlines, retrying accept and read
// errors a socket recovers from, and a shutdown that closes every socket and
// waits for every goroutine it started. The mesh's resolver (meshdns) and
// the sidecar's DNS proxy (dnsproxy) both serve through it, so the two
// cannot drift apart in how they treat sockets. It uses the standard
// library only, so that the proxy binary can link it.
package dnsserver

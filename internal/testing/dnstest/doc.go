// Package dnstest runs a DNS server under test on loopback and talks to it
// over UDP and TCP, so that the mesh's resolver and the sidecar's DNS proxy
// are tested the same way.
package dnstest

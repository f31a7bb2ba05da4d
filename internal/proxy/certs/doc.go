// Package certs is the proxy's workload identity: the certificate and key
// it proves itself with (an X.509 SVID whose URI SAN is its SPIFFE ID), the
// roots it trusts, and the TLS settings every mesh connection uses (TLS 1.3
// only, hybrid post-quantum key exchange first, the peer's SPIFFE ID checked
// against who the destination is expected to be, not only its chain).
//
// A Source hands out the current certificate at each handshake, so a
// rotation never touches connections already up: they keep the
// certificate they were made with, new ones get the new one.
package certs

// Package origdst recovers where a connection captured by the pod's
// REDIRECT rules was headed (SO_ORIGINAL_DST, as conntrack remembers it),
// which the proxy's listeners need in transparent mode.
//
// It is apart from internal/redirect, which writes those rules, so that
// the proxy links a getsockopt and nothing of nftables or netlink: the
// proxy reads the capture's result and never installs it (`trellis up`
// does, as a pod's init step would). cmd/trellis-proxy's dependency
// allowlist (deps_test.go) keeps it that way.
package origdst

// Package deptest checks what a binary links against a list of rules, each
// with its reason (after Tailscale's tstest/deptest, but an allowlist):
// every package outside the standard library must match an Allow rule, a
// package matching a Never rule fails with that rule's reason whatever the
// allowlist says, and an Allow rule that no package matches any more fails
// as stale, so the list stays what the binary really links.
//
// A rule's Pkg is an exact import path, or a prefix ending in "/..." that
// matches the path before it and everything below, as go list patterns do.
package deptest

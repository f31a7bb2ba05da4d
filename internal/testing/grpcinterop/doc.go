// Package grpcinterop holds tests that point grpc-go's own xds:/// resolver
// (a real, third-party proxyless client) at a Trellis control plane and
// prove routing on real RPCs. grpc-go reads its bootstrap once per
// process, so every client runs in a process of its own: the test binary
// re-executed in client mode.
package grpcinterop

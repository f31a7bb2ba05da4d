// Package translate turns the validated config world into Envoy xDS v3
// resources for one proxy: Listeners, RouteConfigurations, Clusters and
// ClusterLoadAssignments. It is pure: no I/O, no clocks, no Kubernetes
// client, and the same input always gives the same output (golden tests
// rely on it).
//
// What a proxy receives depends on who it is: its namespace and labels
// (scoping by exportTo and Sidecar, sourceLabels matches) and its client
// kind. Trellis sidecars get Istio-shaped sidecar resources; proxyless
// gRPC clients (node metadata GENERATOR=grpc) get only what grpc-go
// accepts, with unsupported settings mapped or dropped and logged.
//
// What a sidecar would refuse never reaches it: each VirtualService's
// routes and tcp/tls chains and each cluster go through the sidecar's own
// decoder first (served.go, guard.go), and only the object at fault loses
// its part, reported as TRL0008/TRL0009, so one bad object cannot NACK a
// whole update.
package translate

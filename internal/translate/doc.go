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
package translate

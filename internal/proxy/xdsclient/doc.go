// Package xdsclient is the sidecar's incremental (delta) ADS client: one
// DeltaAggregatedResources stream to the control plane, subscribing
// wildcard to the resource types it is given, in their order (the sidecar
// gives Clusters, ClusterLoadAssignments, Listeners and
// RouteConfigurations, so a listener never arrives before the clusters it
// names). Each type is an xdsresource.Type with its own typed decoder and
// apply function (Subscribe), so updates reach the caller typed.
//
// Every response is decoded completely before anything is applied: one bad
// resource NACKs the whole response with a path-rooted reason and the last
// good set of that type stays, as Envoy and grpc-go do. While the control
// plane is unreachable the client retries with jittered exponential backoff
// and the caller keeps serving what it last applied; on reconnect the
// client sends the versions it holds (initial_resource_versions), so only
// what changed meanwhile is sent again.
//
// The package links neither grpc nor go-control-plane (see transport.go
// and wire.go): together they would cost the sidecar ~18 MB of RSS.
package xdsclient

// Package xdsresource is the proxy's own, small view of the Envoy xDS
// resources it receives: Listeners, RouteConfigurations, Clusters and
// ClusterLoadAssignments, decoded straight from protobuf wire bytes into
// typed, validated structs (as grpc-go's xdsresource does). Each type has
// one Type value (ClusterResource, EndpointResource, ListenerResource,
// RouteResource) with its type URL and a Decode to its struct, which the
// xDS client subscribes with, so updates reach the sidecar typed.
//
// The proxy deliberately does not link go-control-plane's generated types
// or grpc: together they cost ~18 MB of RSS before serving anything, more
// than the whole sidecar budget. Only the fields Trellis's control plane
// sets and the proxy honours are decoded; anything the proxy cannot honour
// in a way that changes behaviour is rejected with a path-rooted error, so
// the client can NACK it and keep its last good config.
package xdsresource

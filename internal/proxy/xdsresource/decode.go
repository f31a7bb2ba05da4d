package xdsresource

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// Type is one resource type the proxy consumes: its type URL and how one
// resource's bytes (the value of the google.protobuf.Any in a discovery
// response) become its name and its typed, validated value T. There is
// one per type (ListenerResource, RouteResource, ClusterResource and
// EndpointResource), as in grpc-go's xdsresource; because the value is
// typed, whoever subscribes to a type gets *Listener or *Cluster and never
// switches on type URLs or asserts.
type Type[T any] struct {
	url    string
	decode func([]byte) (T, error)
	name   func(T) string
	// field is the name's field, for the error when it is empty.
	field string
}

// TypeURL is the type URL the control plane sends the type's resources
// under.
func (t Type[T]) TypeURL() string { return t.url }

// Decode decodes and validates one resource and returns it with its name.
// On a validation error the name is still returned when it could be read,
// so the client can say which resource it NACKs. A resource without a
// name is an error: xDS cannot address it.
func (t Type[T]) Decode(value []byte) (name string, res T, err error) {
	var zero T
	v, err := t.decode(value)
	if err != nil {
		return nameOf(value, 1), zero, err
	}
	if name = t.name(v); name == "" {
		return "", zero, within(errRequired, t.field)
	}
	return name, v, nil
}

// The resource types, in the order the proxy subscribes to them (a
// listener never arrives before the clusters it names).
var (
	ClusterResource  = Type[*Cluster]{url: ClusterType, decode: DecodeCluster, name: func(c *Cluster) string { return c.Name }, field: "name"}
	EndpointResource = Type[*ClusterLoadAssignment]{url: EndpointType, decode: DecodeClusterLoadAssignment,
		name: func(c *ClusterLoadAssignment) string { return c.ClusterName }, field: "cluster_name"}
	ListenerResource = Type[*Listener]{url: ListenerType, decode: DecodeListener, name: func(l *Listener) string { return l.Name }, field: "name"}
	RouteResource    = Type[*RouteConfig]{url: RouteType, decode: DecodeRouteConfig, name: func(r *RouteConfig) string { return r.Name }, field: "name"}
)

// nameOf reads string field num of a message that failed to decode, as
// far as the input allows.
func nameOf(b []byte, num int) string {
	m := msg{b: b}
	name := ""
	for m.next() {
		if int(m.num) == num && m.typ == protowire.BytesType {
			name = string(m.val)
		}
	}
	return name
}

package xdsresource

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// Decode decodes one resource of the given type URL from its serialized
// protobuf bytes (the value of the google.protobuf.Any in a discovery
// response) and validates it. It returns *Listener, *RouteConfig, *Cluster
// or *ClusterLoadAssignment, and the resource's name.
//
// On a validation error the name is still returned when it could be read,
// so the client can say which resource it NACKs.
func Decode(typeURL string, value []byte) (name string, res any, err error) {
	switch typeURL {
	case ListenerType:
		l, err := DecodeListener(value)
		if err != nil {
			return nameOf(value, 1), nil, err
		}
		return named(l.Name, l, "name")
	case RouteType:
		rc, err := DecodeRouteConfig(value)
		if err != nil {
			return nameOf(value, 1), nil, err
		}
		return named(rc.Name, rc, "name")
	case ClusterType:
		c, err := DecodeCluster(value)
		if err != nil {
			return nameOf(value, 1), nil, err
		}
		return named(c.Name, c, "name")
	case EndpointType:
		cla, err := DecodeClusterLoadAssignment(value)
		if err != nil {
			return nameOf(value, 1), nil, err
		}
		return named(cla.ClusterName, cla, "cluster_name")
	}
	return "", nil, errors.New("unsupported resource type " + typeURL)
}

// named refuses the unnamed resources xDS cannot address.
func named(name string, res any, seg string) (string, any, error) {
	if name == "" {
		return "", nil, within(errRequired, seg)
	}
	return name, res, nil
}

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

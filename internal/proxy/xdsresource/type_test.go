package xdsresource_test

import (
	"errors"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// decode decodes b as the resource type of typeURL, for the table tests
// that mix types; the proxy itself always knows the type it decodes.
func decode(typeURL string, b []byte) (string, any, error) {
	switch typeURL {
	case xdsresource.ListenerResource.TypeURL():
		return erase(xdsresource.ListenerResource.Decode(b))
	case xdsresource.RouteResource.TypeURL():
		return erase(xdsresource.RouteResource.Decode(b))
	case xdsresource.ClusterResource.TypeURL():
		return erase(xdsresource.ClusterResource.Decode(b))
	case xdsresource.EndpointResource.TypeURL():
		return erase(xdsresource.EndpointResource.Decode(b))
	}
	return "", nil, errors.New("unsupported resource type " + typeURL)
}

func erase[T any](name string, v T, err error) (string, any, error) {
	if err != nil {
		return name, nil, err
	}
	return name, v, nil
}

// Each Type decodes its own resources under their type URL, names them by
// their name field, and refuses one without a name at that field.
func TestTypes(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{xdsresource.ListenerResource.TypeURL(), xdsresource.ListenerType},
		{xdsresource.RouteResource.TypeURL(), xdsresource.RouteType},
		{xdsresource.ClusterResource.TypeURL(), xdsresource.ClusterType},
		{xdsresource.EndpointResource.TypeURL(), xdsresource.EndpointType},
	} {
		if tc.url != tc.want {
			t.Errorf("TypeURL() = %s, want %s", tc.url, tc.want)
		}
	}

	name, rc, err := xdsresource.RouteResource.Decode(marshal(t, &routev3.RouteConfiguration{Name: "9080"}))
	if err != nil || name != "9080" || rc == nil || rc.Name != "9080" {
		t.Errorf("RouteResource.Decode = %q, %+v, %v; want 9080", name, rc, err)
	}
	name, cla, err := xdsresource.EndpointResource.Decode(marshal(t, &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|80||a"}))
	if err != nil || name != "outbound|80||a" || cla == nil || cla.ClusterName != name {
		t.Errorf("EndpointResource.Decode = %q, %+v, %v; want outbound|80||a", name, cla, err)
	}
	if _, cla, err := xdsresource.EndpointResource.Decode(marshal(t, &endpointv3.ClusterLoadAssignment{})); err == nil || err.Error() != "cluster_name: required" || cla != nil {
		t.Errorf("unnamed assignment: %+v, %v; want cluster_name: required", cla, err)
	}
	if _, c, err := xdsresource.ClusterResource.Decode(marshal(t, &clusterv3.Cluster{})); err == nil || err.Error() != "name: required" || c != nil {
		t.Errorf("unnamed cluster: %+v, %v; want name: required", c, err)
	}
}

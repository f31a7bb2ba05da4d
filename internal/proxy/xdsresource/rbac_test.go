//lint:file-ignore SA1019 Istio writes request authentication matchers as the deprecated metadata principal, which the tests encode.

package xdsresource_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	uritemplatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

func packed(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func rbacWith(perm *rbacv3.Permission, prin *rbacv3.Principal) *rbacv3.RBAC {
	if perm == nil {
		perm = &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	}
	if prin == nil {
		prin = &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	}
	return &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{"p": {Permissions: []*rbacv3.Permission{perm}, Principals: []*rbacv3.Principal{prin}}}}
}

// inboundWith is a listener with one HTTP chain whose filters are
// httpFilters then the router, or, with tcp set, one TCP chain with the
// network filters before tcp_proxy.
func inboundWith(t *testing.T, httpFilters []*hcmv3.HttpFilter, netFilters []*listenerv3.Filter, tcp bool) []byte {
	t.Helper()
	fc := &listenerv3.FilterChain{FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9080)}}
	if tcp {
		fc.Filters = append(netFilters, &listenerv3.Filter{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packed(t, &tcpproxyv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}})}})
	} else {
		hcm := &hcmv3.HttpConnectionManager{StatPrefix: "s",
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "r"}},
			HttpFilters:    append(httpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: packed(t, &routerv3.Router{})}})}
		fc.Filters = append(netFilters, &listenerv3.Filter{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packed(t, hcm)}})
	}
	l := &listenerv3.Listener{Name: "virtualInbound", Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15006}}}},
		FilterChains: []*listenerv3.FilterChain{fc}}
	b, err := proto.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func httpRBAC(t *testing.T, r *rbacv3.RBAC) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.rbac", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: packed(t, &httprbacv3.RBAC{Rules: r})}}
}

// What the proxy cannot check is refused with the path of the setting,
// never skipped: a policy silently not enforced would let requests
// through that it should stop.
func TestRBACRefusals(t *testing.T) {
	template := func(tmpl string) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{Name: "t",
			TypedConfig: packed(t, &uritemplatev3.UriTemplateMatchConfig{PathTemplate: tmpl})}}}
	}
	netRBAC := &listenerv3.Filter{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packed(t, &netrbacv3.RBAC{Rules: rbacWith(nil, nil), StatPrefix: "tcp."})}}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"requested_server_name with a bad regex", inboundWith(t, []*hcmv3.HttpFilter{httpRBAC(t, rbacWith(&rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}}}}, nil))}, nil, false),
			`filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules.policies["p"].permissions[0].requested_server_name`},
		{"metadata of another filter", inboundWith(t, []*hcmv3.HttpFilter{httpRBAC(t, rbacWith(nil, &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{Filter: "envoy.filters.http.lua",
			Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}}}}))}, nil, false),
			`rules.policies["p"].principals[0].metadata.filter: "envoy.filters.http.lua": only istio_authn`},
		{"an empty and_rules", inboundWith(t, []*hcmv3.HttpFilter{httpRBAC(t, rbacWith(&rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{}}}, nil))}, nil, false),
			`permissions[0].and_rules.rules: required`},
		{"an empty or_ids", inboundWith(t, []*hcmv3.HttpFilter{httpRBAC(t, rbacWith(nil, &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{}}}))}, nil, false),
			`principals[0].or_ids.ids: required`},
		{"a bad rule inside or_rules", inboundWith(t, []*hcmv3.HttpFilter{httpRBAC(t, rbacWith(&rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
			{Rule: &rbacv3.Permission_Any{Any: true}}, template("/a/{**}/b")}}}}, nil))}, nil, false),
			`permissions[0].or_rules.rules[1].uri_template`},
		{"a template with {**} in the middle", inboundWith(t, []*hcmv3.HttpFilter{httpRBAC(t, rbacWith(template("/a/{**}/b"), nil))}, nil, false),
			`permissions[0].uri_template.typed_config.path_template: path template "/a/{**}/b": {**} must be the last segment`},
		{"RBAC after the router", func() []byte {
			b := inboundWith(t, nil, nil, false)
			l := &listenerv3.Listener{}
			proto.Unmarshal(b, l)
			hcm := &hcmv3.HttpConnectionManager{}
			l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm)
			hcm.HttpFilters = append(hcm.HttpFilters, httpRBAC(t, rbacWith(nil, nil)))
			l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: packed(t, hcm)}
			out, _ := proto.Marshal(l)
			return out
		}(), `http_filters[1]: RBAC filter "envoy.filters.http.rbac" follows the router`},
		{"network RBAC ahead of a connection manager", inboundWith(t, nil, []*listenerv3.Filter{netRBAC}, false),
			`filter_chains[0].filters: network RBAC filter "envoy.filters.network.rbac" ahead of an http_connection_manager is not supported`},
		{"continuous enforcement", inboundWith(t, nil, []*listenerv3.Filter{{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packed(t,
			&netrbacv3.RBAC{Rules: rbacWith(nil, nil), EnforcementType: netrbacv3.RBAC_CONTINUOUS})}}}, true),
			`filter_chains[0].filters[0].typed_config.enforcement_type: only ONE_TIME_ON_FIRST_BYTE`},
	} {
		_, err := xdsresource.DecodeListener(tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// Accepted: a network RBAC ahead of tcp_proxy, and a template.
	if _, err := xdsresource.DecodeListener(inboundWith(t, nil, []*listenerv3.Filter{netRBAC}, true)); err != nil {
		t.Errorf("network RBAC before tcp_proxy: %v", err)
	}
	l, err := xdsresource.DecodeListener(inboundWith(t, []*hcmv3.HttpFilter{httpRBAC(t, rbacWith(template("/items/{*}/x/{**}"), nil))}, nil, false))
	if err != nil {
		t.Fatal(err)
	}
	re := l.FilterChains[0].HTTP.RBAC[0].Policies[0].Permissions[0].PathRegex
	for path, want := range map[string]bool{"/items/1/x/": true, "/items/1/x/a/b": true, "/items//x/a": false, "/items/1/2/x/a": false} {
		if re.MatchString(path) != want {
			t.Errorf("template /items/{*}/x/{**} against %s: %v, want %v", path, !want, want)
		}
	}
}

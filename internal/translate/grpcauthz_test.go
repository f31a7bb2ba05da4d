package translate_test

import (
	"sort"
	"strings"
	"testing"

	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trellismesh/trellis/internal/translate"
)

// grpcServerRBAC is the HTTP filters of greeter-a's server listener, each
// as "name action [policies]", and the RBAC configs as JSON.
func grpcServerRBAC(t *testing.T, policies ...string) ([]string, string) {
	t.Helper()
	w := grpcTLSWorldWith(t, policies...)
	p := &translate.Proxy{ID: "sidecar~127.20.0.1~srv.default~default.svc.cluster.local", IP: "127.20.0.1", Namespace: "default",
		Labels: map[string]string{"app": "greeter", "version": "a", "security.istio.io/tlsMode": "istio"}, Generator: translate.GeneratorGRPC}
	r := translate.Local(w, p, nil)
	if len(r.Listeners) == 0 {
		t.Fatal("no server listener")
	}
	var h hcmv3.HttpConnectionManager
	if err := r.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	var out []string
	var js strings.Builder
	for _, f := range h.HttpFilters {
		if f.Name == "envoy.filters.http.router" {
			out = append(out, f.Name)
			continue
		}
		var rb httprbacv3.RBAC
		if err := f.GetTypedConfig().UnmarshalTo(&rb); err != nil {
			t.Fatalf("filter %s: %v", f.Name, err)
		}
		var names []string
		for n := range rb.GetRules().GetPolicies() {
			names = append(names, n)
		}
		sort.Strings(names)
		out = append(out, f.Name+" "+rb.GetRules().GetAction().String()+" ["+strings.Join(names, " ")+"]")
		js.WriteString(protojson.Format(rb.GetRules()))
	}
	return out, js.String()
}

func authzPolicy(name, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: default}\nspec:\n  selector: {matchLabels: {app: greeter}}\n" + spec
}

// AuthorizationPolicy reaches xDS-enabled grpc-go servers as grpc-go's
// RBAC filters, DENY before ALLOW under distinct names (grpc-go refuses
// duplicates), AUDIT left out (grpc-go ignores LOG), and nothing grpc-go
// would refuse: an ALLOW rule on a grpc-* header is dropped (allows
// nothing), a DENY rule's grpc-* condition matches every request.
func TestGRPCServerAuthorization(t *testing.T) {
	got, _ := grpcServerRBAC(t,
		authzPolicy("allow-sleep", "  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]\n"),
		authzPolicy("deny-admin", "  action: DENY\n  rules: [{to: [{operation: {paths: [/admin.Admin/*]}}]}]\n"),
		authzPolicy("audit", "  action: AUDIT\n  rules: [{}]\n"),
	)
	want := []string{
		"envoy.filters.http.rbac.DENY DENY [ns[default]-policy[deny-admin]-rule[0]]",
		"envoy.filters.http.rbac ALLOW [ns[default]-policy[allow-sleep]-rule[0]]",
		"envoy.filters.http.router",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filters (-want +got):\n%s", diff)
	}

	got, js := grpcServerRBAC(t,
		authzPolicy("allow-grpc-header", "  rules: [{when: [{key: 'request.headers[grpc-foo]', values: [x]}]}]\n"),
		authzPolicy("deny-grpc-header", "  action: DENY\n  rules: [{to: [{operation: {paths: [/admin.Admin/*]}}], when: [{key: 'request.headers[grpc-foo]', notValues: [x]}]}]\n"),
	)
	want = []string{
		"envoy.filters.http.rbac.DENY DENY [ns[default]-policy[deny-grpc-header]-rule[0]]",
		"envoy.filters.http.rbac ALLOW []",
		"envoy.filters.http.router",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filters with grpc-* headers (-want +got):\n%s", diff)
	}
	if strings.Contains(js, "grpc-foo") {
		t.Errorf("a grpc-* header matcher reached grpc-go, which refuses it:\n%s", js)
	}
	if !strings.Contains(js, "/admin.Admin/") {
		t.Errorf("the DENY rule lost its path:\n%s", js)
	}
}

// No policy: no RBAC filter (grpc-go then allows every call).
func TestGRPCServerNoAuthorization(t *testing.T) {
	got, _ := grpcServerRBAC(t)
	if diff := cmp.Diff([]string{"envoy.filters.http.router"}, got); diff != "" {
		t.Errorf("filters (-want +got):\n%s", diff)
	}
}

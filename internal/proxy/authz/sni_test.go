package authz

import (
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// requested_server_name matches the downstream TLS server name, on HTTP
// and TCP alike; plaintext has the empty one, which only a matcher that
// takes "" (or a not-rule) matches, as in Envoy.
func TestRequestedServerName(t *testing.T) {
	sni := func(m xdsresource.StringMatcher) xdsresource.Permission {
		return xdsresource.Permission{Kind: xdsresource.PermRequestedServerName, Path: m}
	}
	e, err := Compile([]*xdsresource.RBAC{{Name: "allow", Action: xdsresource.RBACAllow, Policies: []xdsresource.RBACPolicy{
		{Name: "sni", Permissions: []xdsresource.Permission{orRules(sni(exact("a.example")), sni(exact("b.example")))}, Principals: []xdsresource.Principal{anyID}},
		{Name: "not-c", Permissions: []xdsresource.Permission{{Kind: xdsresource.PermNot, Rules: []xdsresource.Permission{sni(regex("c\\..*|"))}}}, Principals: []xdsresource.Principal{anyID}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		http bool
		sni  string
		want bool
	}{
		{true, "a.example", true},
		{false, "b.example", true},
		{true, "z.example", true}, // not c.*
		{true, "c.example", false},
		{false, "c.example", false},
		{true, "", false}, // plaintext: "" matches the regex, so not-c refuses
	} {
		r := &Request{HTTP: tc.http, Method: "GET", Path: "/", SNI: tc.sni}
		if got := e.Check(r).Allowed; got != tc.want {
			t.Errorf("http=%v sni=%q: allowed %v, want %v", tc.http, tc.sni, got, tc.want)
		}
	}
}

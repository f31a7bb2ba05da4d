package authz

import (
	"net/http"
	"net/netip"
	"regexp"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/strmatch"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

func exact(v string) xdsresource.StringMatcher {
	return xdsresource.StringMatcher{Kind: xdsresource.StringExact, Value: v}
}

func regex(src string) xdsresource.StringMatcher {
	return xdsresource.StringMatcher{Kind: xdsresource.StringRegex, Value: src, Regex: regexp.MustCompile("^(?:" + src + ")$")}
}

func principal(m xdsresource.StringMatcher) xdsresource.Principal {
	return xdsresource.Principal{Kind: xdsresource.PrinAuthenticated, Name: &m}
}

func orIDs(ids ...xdsresource.Principal) xdsresource.Principal {
	return xdsresource.Principal{Kind: xdsresource.PrinOr, IDs: ids}
}

func orRules(rules ...xdsresource.Permission) xdsresource.Permission {
	return xdsresource.Permission{Kind: xdsresource.PermOr, Rules: rules}
}

func path(m xdsresource.StringMatcher) xdsresource.Permission {
	return xdsresource.Permission{Kind: xdsresource.PermURLPath, Path: m}
}

func method(v string) xdsresource.Permission {
	return xdsresource.Permission{Kind: xdsresource.PermHeader, Header: xdsresource.HeaderMatcher{Name: ":method", Match: exact(v)}}
}

var (
	anyPerm = xdsresource.Permission{Kind: xdsresource.PermAny}
	anyID   = xdsresource.Principal{Kind: xdsresource.PrinAny}
)

// paymentEngine is the shop's payment policy as Istio compiles it: ALLOW
// checkout and refund by principal, for GET and POST on /pay and /refund*,
// with a DENY for namespace foo.
func paymentEngine(t testing.TB) *Engine {
	allow := &xdsresource.RBAC{Name: "allow", Action: xdsresource.RBACAllow, Policies: []xdsresource.RBACPolicy{{
		Name: "ns[default]-policy[payment]-rule[0]",
		Permissions: []xdsresource.Permission{{Kind: xdsresource.PermAnd, Rules: []xdsresource.Permission{
			orRules(method("GET"), method("POST")),
			orRules(path(exact("/pay")), path(xdsresource.StringMatcher{Kind: xdsresource.StringPrefix, Value: "/refund"})),
		}}},
		Principals: []xdsresource.Principal{orIDs(
			principal(exact("spiffe://cluster.local/ns/default/sa/checkout")),
			principal(exact("spiffe://cluster.local/ns/default/sa/refund")),
		)},
	}}}
	deny := &xdsresource.RBAC{Name: "deny", Action: xdsresource.RBACDeny, Policies: []xdsresource.RBACPolicy{{
		Name:        "ns[default]-policy[no-foo]-rule[0]",
		Permissions: []xdsresource.Permission{anyPerm},
		Principals:  []xdsresource.Principal{principal(regex(".*/ns/foo/.*"))},
	}}}
	e, err := Compile([]*xdsresource.RBAC{deny, allow})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func request(m, p, peer string) *Request {
	return &Request{HTTP: true, Method: m, Path: p, Authority: "payment", Header: http.Header{},
		Source: netip.MustParseAddrPort("10.0.0.1:5000"), Dst: netip.MustParseAddrPort("10.0.0.2:9080"), PeerID: peer}
}

func TestEngineDecisions(t *testing.T) {
	e := paymentEngine(t)
	for _, tc := range []struct {
		name string
		r    *Request
		want bool
	}{
		{"checkout GET /pay", request("GET", "/pay", "spiffe://cluster.local/ns/default/sa/checkout"), true},
		{"refund POST /refund/1?x", request("POST", "/refund/1?x=y", "spiffe://cluster.local/ns/default/sa/refund"), true},
		{"checkout DELETE", request("DELETE", "/pay", "spiffe://cluster.local/ns/default/sa/checkout"), false},
		{"checkout other path", request("GET", "/admin", "spiffe://cluster.local/ns/default/sa/checkout"), false},
		{"sleep", request("GET", "/pay", "spiffe://cluster.local/ns/default/sa/sleep"), false},
		{"plaintext", request("GET", "/pay", ""), false},
		{"foo denied first", request("GET", "/pay", "spiffe://cluster.local/ns/foo/sa/checkout"), false},
		{"a principal differing in case", request("GET", "/pay", "spiffe://cluster.local/ns/default/sa/Checkout"), false},
	} {
		if got := e.Check(tc.r); got.Allowed != tc.want {
			t.Errorf("%s: %+v, want allowed %v", tc.name, got, tc.want)
		}
	}
	if res := e.Check(request("GET", "/pay", "spiffe://cluster.local/ns/foo/sa/x")); res.Filter != "deny" || res.Policy != "ns[default]-policy[no-foo]-rule[0]" {
		t.Errorf("the refusal names %q/%q, want the DENY policy", res.Filter, res.Policy)
	}
}

// The common rules compile to sets and substring tests, not regexes.
func TestEngineCompilesSets(t *testing.T) {
	e := paymentEngine(t)
	allow := e.filters[1].policies[0]
	if k := allow.prins[0].kind; k != nSet {
		t.Errorf("OR of exact principals compiled to kind %d, want a set", k)
	}
	perm := allow.perms[0]
	if perm.kids[0].kind != nSet || perm.kids[0].attr != aMethod {
		t.Errorf("OR of methods compiled to %+v, want a set", perm.kids[0])
	}
	if n := e.filters[0].policies[0].prins[0]; n.sm.Kind() != strmatch.Contains || n.sm.Value() != "/ns/foo/" {
		t.Errorf("namespace regex compiled to %+v, want a substring test", n.sm)
	}
}

func TestEmptyAllowDeniesAll(t *testing.T) {
	e, err := Compile([]*xdsresource.RBAC{{Name: "allow", Action: xdsresource.RBACAllow}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Check(request("GET", "/", "spiffe://x")).Allowed {
		t.Error("an ALLOW filter without policies allowed a request")
	}
	var none *Engine
	if !none.Check(request("GET", "/", "")).Allowed || !none.Empty() {
		t.Error("a nil engine must allow")
	}
}

func TestAuditMarksAndAllows(t *testing.T) {
	e, err := Compile([]*xdsresource.RBAC{{Name: "audit", Action: xdsresource.RBACLog, Policies: []xdsresource.RBACPolicy{
		{Name: "a", Permissions: []xdsresource.Permission{path(exact("/x"))}, Principals: []xdsresource.Principal{anyID}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if res := e.Check(request("GET", "/x", "")); !res.Allowed || res.Audit != "a" {
		t.Errorf("%+v, want allowed and audited by a", res)
	}
	if res := e.Check(request("GET", "/y", "")); !res.Allowed || res.Audit != "" {
		t.Errorf("%+v, want allowed, not audited", res)
	}
}

// TCP requests have no HTTP attributes: a header rule never matches, an
// inverted one always does (Envoy's missing-header rule); IP and port
// rules apply.
func TestTCPRequest(t *testing.T) {
	e, err := Compile([]*xdsresource.RBAC{{Name: "allow", Action: xdsresource.RBACAllow, Policies: []xdsresource.RBACPolicy{
		{Name: "ip", Permissions: []xdsresource.Permission{{Kind: xdsresource.PermDestinationPort, Port: 9000}},
			Principals: []xdsresource.Principal{{Kind: xdsresource.PrinDirectRemoteIP, IP: netip.MustParsePrefix("10.0.0.0/24")}}},
		{Name: "method", Permissions: []xdsresource.Permission{method("GET")}, Principals: []xdsresource.Principal{anyID}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(src, dst string) *Request {
		return &Request{Source: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)}
	}
	if !e.Check(tcp("10.0.0.9:1", "10.0.1.1:9000")).Allowed {
		t.Error("source in the block, port 9000: refused")
	}
	if e.Check(tcp("10.0.0.9:1", "10.0.1.1:9001")).Allowed {
		t.Error("port 9001 allowed by a port-9000 rule, or by a method rule on TCP")
	}
	if e.Check(tcp("[::ffff:10.0.1.9]:1", "10.0.1.1:9000")).Allowed {
		t.Error("source outside the block allowed")
	}
}

// The decision on the common rules allocates nothing.
func TestCheckAllocatesNothing(t *testing.T) {
	e := paymentEngine(t)
	r := request("GET", "/pay", "spiffe://cluster.local/ns/default/sa/checkout")
	denied := request("GET", "/pay", "spiffe://cluster.local/ns/foo/sa/checkout")
	if n := testing.AllocsPerRun(1000, func() {
		e.Check(r)
		e.Check(denied)
	}); n != 0 {
		t.Errorf("Check allocates %v times per request", n)
	}
}

func BenchmarkCheck(b *testing.B) {
	e := paymentEngine(b)
	r := request("POST", "/refund/42", "spiffe://cluster.local/ns/default/sa/refund")
	b.ReportAllocs()
	for b.Loop() {
		if !e.Check(r).Allowed {
			b.Fatal("refused")
		}
	}
}

// Envoy's ignore_case folds ASCII letters only: a value's other letters
// compare byte for byte, in a lone matcher and in a set of them alike.
func TestIgnoreCaseFoldsASCIIOnly(t *testing.T) {
	header := func(v string) xdsresource.Permission {
		return xdsresource.Permission{Kind: xdsresource.PermHeader, Header: xdsresource.HeaderMatcher{
			Name: "x-team", Match: xdsresource.StringMatcher{Kind: xdsresource.StringExact, Value: v, IgnoreCase: true}}}
	}
	for name, perm := range map[string]xdsresource.Permission{
		"one":   header("Équipe-\u212a"),
		"a set": orRules(header("Équipe-\u212a"), header("other")),
	} {
		e, err := Compile([]*xdsresource.RBAC{{Name: "allow", Action: xdsresource.RBACAllow, Policies: []xdsresource.RBACPolicy{{
			Name: "p", Permissions: []xdsresource.Permission{perm}, Principals: []xdsresource.Principal{anyID},
		}}}})
		if err != nil {
			t.Fatal(err)
		}
		for v, want := range map[string]bool{
			"Équipe-\u212a": true,
			"éQUIPE-\u212a": false,
			"ÉQUIPE-\u212a": true,
			"équipe-k":      false, // strings.ToLower would have made both sides this
			"Équipe-K":      false,
		} {
			r := request("GET", "/", "")
			r.Header = http.Header{"X-Team": {v}}
			if got := e.Check(r).Allowed; got != want {
				t.Errorf("%s: x-team %q allowed %v, want %v", name, v, got, want)
			}
		}
		r := request("GET", "/", "")
		r.Header = http.Header{"X-Team": {"ÉQUIPE-\u212a"}}
		if n := testing.AllocsPerRun(100, func() { e.Check(r) }); n != 0 {
			t.Errorf("%s: a folded check allocated %v times, want 0", name, n)
		}
	}
}

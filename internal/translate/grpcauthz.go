package translate

import (
	"fmt"
	"sort"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// AuthorizationPolicy on xDS-enabled grpc-go servers, as istiod's grpcgen
// gives it: the same compiled rules as a sidecar's HTTP chains (authz.go)
// as grpc-go's RBAC HTTP filter, DENY (with CUSTOM, which fails closed:
// grpc-go has no external authorization) before ALLOW. grpc-go reads the
// caller's principal from its verified certificate (URI SAN first), as the
// sidecar does.
//
// What grpc-go cannot check fails closed, as authz.go does for sidecars:
// it refuses (NACKs) a header matcher on a grpc-* header or :scheme, so an
// ALLOW rule needing one is dropped (it allows nothing) and in a DENY rule
// such a matcher matches any request (the rule refuses more). grpc-go
// ignores LOG, so AUDIT policies are not logged there (reported once).

// grpcAuthzFilters are the RBAC filters of an xDS-enabled server's
// inbound chain, to go before the router.
func (t *translation) grpcAuthzFilters() []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	for _, r := range t.rbacRules(false, false) {
		name := httpRBACFilterName
		switch r.Action {
		case rbacv3.RBAC_LOG:
			t.w.reportOnce(t.log, "grpc-audit/"+t.proxy.Namespace+"/"+t.proxy.labelKey(),
				"AUDIT AuthorizationPolicy not logged by a proxyless gRPC server: grpc-go has no audit logging of RBAC decisions", "policies", policyNames(r))
			continue
		case rbacv3.RBAC_DENY:
			name += ".DENY" // grpc-go refuses two filters of one name
		}
		t.grpcCheckableRBAC(r)
		out = append(out, &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&httprbacv3.RBAC{Rules: r})}})
	}
	return out
}

func policyNames(r *rbacv3.RBAC) string {
	names := make([]string, 0, len(r.Policies))
	for n := range r.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// grpcUncheckableHeader is a header grpc-go refuses to match on.
func grpcUncheckableHeader(h *routev3.HeaderMatcher) bool {
	name := strings.ToLower(h.GetName())
	return name == ":scheme" || strings.HasPrefix(name, "grpc-")
}

// grpcCheckableRBAC rewrites r so grpc-go accepts it, failing closed:
// ALLOW policies with a header grpc-go cannot check are dropped, DENY
// policies match any value of such a header.
func (t *translation) grpcCheckableRBAC(r *rbacv3.RBAC) {
	for name, p := range r.Policies {
		changed := false
		for _, perm := range p.Permissions {
			changed = grpcWidenPermission(perm) || changed
		}
		for _, pr := range p.Principals {
			changed = grpcWidenPrincipal(pr) || changed
		}
		if !changed {
			continue
		}
		if r.Action == rbacv3.RBAC_ALLOW {
			delete(r.Policies, name)
			t.w.reportOnce(t.log, "grpc-authz-drop/"+name, "AuthorizationPolicy rule dropped for proxyless gRPC servers: grpc-go cannot match grpc-* or :scheme headers, so it allows nothing there", "rule", name)
			continue
		}
		t.w.reportOnce(t.log, "grpc-authz-widen/"+name, fmt.Sprintf("AuthorizationPolicy %v rule widened for proxyless gRPC servers: grpc-go cannot match grpc-* or :scheme headers, so that condition matches every request", r.Action), "rule", name)
	}
}

// grpcWidenPermission replaces the header matchers grpc-go cannot check
// with "any" and reports whether it did; the caller drops an ALLOW policy
// that had one, so the widening only ever makes a DENY refuse more.
func grpcWidenPermission(p *rbacv3.Permission) bool {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Header:
		if grpcUncheckableHeader(r.Header) {
			p.Rule = &rbacv3.Permission_Any{Any: true}
			return true
		}
	case *rbacv3.Permission_AndRules:
		return grpcWidenPermissions(r.AndRules.GetRules())
	case *rbacv3.Permission_OrRules:
		return grpcWidenPermissions(r.OrRules.GetRules())
	case *rbacv3.Permission_NotRule:
		// not(header) must widen as a whole: not(any) would match nothing,
		// and a DENY depending on it would refuse less.
		if h := r.NotRule.GetHeader(); h != nil && grpcUncheckableHeader(h) {
			p.Rule = &rbacv3.Permission_Any{Any: true}
			return true
		}
		return grpcWidenPermission(r.NotRule)
	}
	return false
}

func grpcWidenPermissions(ps []*rbacv3.Permission) bool {
	changed := false
	for _, p := range ps {
		changed = grpcWidenPermission(p) || changed
	}
	return changed
}

func grpcWidenPrincipal(p *rbacv3.Principal) bool {
	switch r := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Header:
		if grpcUncheckableHeader(r.Header) {
			p.Identifier = &rbacv3.Principal_Any{Any: true}
			return true
		}
	case *rbacv3.Principal_AndIds:
		return grpcWidenPrincipals(r.AndIds.GetIds())
	case *rbacv3.Principal_OrIds:
		return grpcWidenPrincipals(r.OrIds.GetIds())
	case *rbacv3.Principal_NotId:
		if h := r.NotId.GetHeader(); h != nil && grpcUncheckableHeader(h) {
			p.Identifier = &rbacv3.Principal_Any{Any: true}
			return true
		}
		return grpcWidenPrincipal(r.NotId)
	}
	return false
}

func grpcWidenPrincipals(ps []*rbacv3.Principal) bool {
	changed := false
	for _, p := range ps {
		changed = grpcWidenPrincipal(p) || changed
	}
	return changed
}

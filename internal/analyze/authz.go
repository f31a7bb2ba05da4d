package analyze

import (
	"fmt"
	"sort"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/field"
	"github.com/trellismesh/trellis/internal/registry"
)

var (
	authzIdentityWithoutStrict = kind{"TRL0010", "AuthorizationIdentityWithoutStrictMTLS", Warning}
	authzHTTPFieldsOnTCP       = kind{"TRL0011", "AuthorizationHTTPFieldsOnTCPPort", Warning}
	authzCustomProvider        = kind{"TRL0012", "AuthorizationCustomProviderUnusable", Warning}
)

// authorizationEdgeCases reports the AuthorizationPolicies whose effect
// is not what they read like, in the two ways Istio's users trip on:
// identity fields on workloads that accept plaintext (a plaintext caller
// has no identity: an ALLOW with notNamespaces [foo] lets plaintext from
// foo through, a DENY on namespaces [foo] does not stop it), and HTTP
// fields on a TCP port (an ALLOW rule is dropped there, a DENY rule keeps
// only its TCP fields and so denies more).
func authorizationEdgeCases(w *world) []Message {
	var msgs []Message
	for _, o := range w.byKind[config.AuthorizationPolicy] {
		ap := o.Spec.(*security.AuthorizationPolicy)
		if ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0 {
			continue
		}
		ns := o.Namespace
		if ns == w.rootNS {
			ns = ""
		}
		sel := ap.GetSelector().GetMatchLabels()
		if path := identityField(ap); path != "" {
			var open []string
			for _, wl := range w.workloadsIn(ns, sel) {
				if mode := w.mtlsMode(wl); mode != "STRICT" {
					open = append(open, fmt.Sprintf("%s/%s: %s", wl.ns(), wl.obj.Name, mode))
				}
			}
			if len(open) > 0 {
				sort.Strings(open)
				msgs = append(msgs, authzIdentityWithoutStrict.msg(o, path,
					"this matches on the caller's mTLS identity, but workloads the policy applies to accept plaintext (%s), whose callers have no identity: an ALLOW on principals or namespaces refuses them, notPrincipals/notNamespaces admit them from any namespace, and a DENY on principals or namespaces does not stop them. Set a STRICT PeerAuthentication for these workloads",
					strings.Join(open, ", ")))
			}
		}
		if ap.GetAction() == security.AuthorizationPolicy_CUSTOM {
			if why := w.customProviderProblem(ap.GetProvider().GetName()); why != "" {
				msgs = append(msgs, authzCustomProvider.msg(o, "spec.provider.name",
					"%s: the sidecars cannot ask it, so the requests this policy's rules match are refused", why))
			}
		}
		if path := httpField(ap); path != "" {
			if ports := w.tcpPortsOf(ns, sel); len(ports) > 0 {
				effect := "is dropped on them: it allows nothing there, and connections no other rule allows are refused"
				switch ap.GetAction() {
				case security.AuthorizationPolicy_DENY, security.AuthorizationPolicy_AUDIT:
					effect = "keeps only its TCP fields (source, ports, IPs) on them, so it matches every connection those fields match"
				}
				msgs = append(msgs, authzHTTPFieldsOnTCP.msg(o, path,
					"HTTP fields (hosts, methods, paths, request headers, request principals) cannot be checked on TCP ports %s; as in Istio, the rule %s",
					strings.Join(ports, ", "), effect))
			}
		}
	}
	return msgs
}

// customProviderProblem says why a CUSTOM policy's provider cannot be
// used by the sidecars ("" when it can): it must be a MeshConfig
// extensionProviders entry of kind envoyExtAuthzHttp or envoyExtAuthzGrpc,
// and one that sends the request body needs a maxRequestBytes (Envoy
// refuses 0).
func (w *world) customProviderProblem(name string) string {
	for _, ep := range w.meshConfig().GetExtensionProviders() {
		if ep.GetName() != name {
			continue
		}
		h, g := ep.GetEnvoyExtAuthzHttp(), ep.GetEnvoyExtAuthzGrpc()
		switch {
		case h == nil && g == nil:
			return fmt.Sprintf("provider %q is not an authorization provider (envoyExtAuthzHttp or envoyExtAuthzGrpc)", name)
		case h.GetIncludeRequestBodyInCheck() != nil && h.GetIncludeRequestBodyInCheck().GetMaxRequestBytes() == 0,
			g.GetIncludeRequestBodyInCheck() != nil && g.GetIncludeRequestBodyInCheck().GetMaxRequestBytes() == 0:
			return fmt.Sprintf("provider %q sends the request body (includeRequestBodyInCheck) without maxRequestBytes, which Envoy refuses", name)
		}
		return ""
	}
	return fmt.Sprintf("provider %q is not in MeshConfig extensionProviders", name)
}

// meshConfig is the MeshConfig of the analysed objects (the istio
// ConfigMap in the root namespace), nil when there is none or it does not
// parse (validation reports that).
func (w *world) meshConfig() *meshv1alpha1.MeshConfig {
	o := w.keys[config.Key{GroupKind: config.ConfigMap, Namespace: config.DefaultRootNamespace, Name: config.MeshConfigMapName}]
	if o == nil {
		return nil
	}
	data, ok := o.Spec.(*corev1.ConfigMap).Data[config.MeshConfigKey]
	if !ok {
		return nil
	}
	mc, errs := config.ParseMeshConfig(field.NewPath("data"), data)
	if len(errs) > 0 {
		return nil
	}
	return mc
}

// identityField is the path of the first field of ap that compares the
// caller's mTLS identity, "" if none does.
func identityField(ap *security.AuthorizationPolicy) string {
	for i, r := range ap.GetRules() {
		rp := idx("spec.rules", i)
		for j, f := range r.GetFrom() {
			s := f.GetSource()
			p := idx(rp+".from", j) + ".source."
			for _, l := range []struct {
				name string
				v    []string
			}{{"principals", s.GetPrincipals()}, {"notPrincipals", s.GetNotPrincipals()}, {"namespaces", s.GetNamespaces()},
				{"notNamespaces", s.GetNotNamespaces()}, {"serviceAccounts", s.GetServiceAccounts()}, {"notServiceAccounts", s.GetNotServiceAccounts()}} {
				if len(l.v) > 0 {
					return p + l.name
				}
			}
		}
		for j, c := range r.GetWhen() {
			switch c.GetKey() {
			case "source.principal", "source.namespace", "source.serviceAccount":
				return idx(rp+".when", j) + ".key"
			}
		}
	}
	return ""
}

// httpField is the path of the first HTTP-only field of ap, "" if none.
func httpField(ap *security.AuthorizationPolicy) string {
	for i, r := range ap.GetRules() {
		rp := idx("spec.rules", i)
		for j, f := range r.GetFrom() {
			s := f.GetSource()
			if len(s.GetRequestPrincipals())+len(s.GetNotRequestPrincipals()) > 0 {
				return idx(rp+".from", j) + ".source.requestPrincipals"
			}
		}
		for j, t := range r.GetTo() {
			o := t.GetOperation()
			p := idx(rp+".to", j) + ".operation."
			for _, l := range []struct {
				name string
				v    []string
			}{{"hosts", o.GetHosts()}, {"notHosts", o.GetNotHosts()}, {"methods", o.GetMethods()}, {"notMethods", o.GetNotMethods()},
				{"paths", o.GetPaths()}, {"notPaths", o.GetNotPaths()}} {
				if len(l.v) > 0 {
					return p + l.name
				}
			}
		}
		for j, c := range r.GetWhen() {
			if k := c.GetKey(); strings.HasPrefix(k, "request.headers") || strings.HasPrefix(k, "request.auth.") {
				return idx(rp+".when", j) + ".key"
			}
		}
	}
	return ""
}

// tcpPortsOf lists the TCP service ports ("host:port") that reach the
// workloads a policy in ns ("" for every namespace) with selector sel
// applies to. Ports whose protocol is not declared are served as HTTP, as
// sniffing finds it, and are left out.
func (w *world) tcpPortsOf(ns string, sel map[string]string) []string {
	var out []string
	for _, svc := range w.translation().Reg.Services() {
		s := w.services[svc.Hostname]
		if s == nil || s.selector == nil {
			continue
		}
		applies := false
		for _, wl := range w.workloadsIn(svc.Namespace, s.selector) {
			if (ns == "" || wl.ns() == ns) && registry.Selects(sel, wl.labels) {
				applies = true
				break
			}
		}
		if !applies {
			continue
		}
		for _, port := range svc.Ports {
			if !port.Protocol.IsHTTP() && port.Protocol != registry.Unsupported {
				out = append(out, fmt.Sprintf("%s:%d", svc.Hostname, port.Port))
			}
		}
	}
	sort.Strings(out)
	return out
}

// mtlsMode is the PeerAuthentication mode in force for wl, as Istio picks
// it: the workload's own (selector), else its namespace's, else the
// mesh-wide one in the root namespace; PERMISSIVE when none sets one.
// Port-level modes are not considered.
func (w *world) mtlsMode(wl workload) string {
	var workloadMode, nsMode, meshMode string
	for _, o := range w.byKind[config.PeerAuthentication] {
		pa := o.Spec.(*security.PeerAuthentication)
		mode := pa.GetMtls().GetMode()
		if mode == security.PeerAuthentication_MutualTLS_UNSET {
			continue
		}
		sel := pa.GetSelector().GetMatchLabels()
		switch {
		case o.Namespace == wl.ns() && len(sel) > 0 && registry.Selects(sel, wl.labels):
			workloadMode = mode.String()
		case o.Namespace == wl.ns() && len(sel) == 0:
			nsMode = mode.String()
		case o.Namespace == w.rootNS && len(sel) == 0:
			meshMode = mode.String()
		}
	}
	for _, m := range []string{workloadMode, nsMode, meshMode} {
		if m != "" {
			return m
		}
	}
	return "PERMISSIVE"
}

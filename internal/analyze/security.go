package analyze

import (
	"strings"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/trellismesh/trellis/internal/config"
)

// policySelectors reports security policies whose workload selector matches
// no workload: the policy protects nothing, usually because of a label
// typo. A policy in the root namespace selects across the mesh.
func policySelectors(w *world) []Message {
	var msgs []Message
	check := func(o *config.Object, sel *typev1beta1.WorkloadSelector, targeted bool) {
		// A targetRef attaches the policy to a gateway or Service; the
		// selector is then ignored.
		if targeted || len(sel.GetMatchLabels()) == 0 {
			return
		}
		ns := o.Namespace
		if ns == w.rootNS {
			ns = ""
		}
		if len(w.workloadsIn(ns, sel.GetMatchLabels())) == 0 {
			msgs = append(msgs, noMatchingWorkloadsFound.msg(o, "spec.selector.matchLabels",
				"No matching workloads for this resource with the following labels: %s", labelString(sel.GetMatchLabels())))
		}
	}
	for _, o := range w.byKind[config.AuthorizationPolicy] {
		p := o.Spec.(*security.AuthorizationPolicy)
		check(o, p.GetSelector(), p.GetTargetRef() != nil || len(p.GetTargetRefs()) > 0)
	}
	for _, o := range w.byKind[config.RequestAuthentication] {
		p := o.Spec.(*security.RequestAuthentication)
		check(o, p.GetSelector(), p.GetTargetRef() != nil || len(p.GetTargetRefs()) > 0)
	}
	for _, o := range w.byKind[config.PeerAuthentication] {
		check(o, o.Spec.(*security.PeerAuthentication).GetSelector(), false)
	}
	return msgs
}

// authorizationPolicies reports source namespaces no object lives in and
// principals naming a service account nothing runs as: such a rule can
// never match, which for ALLOW silently refuses the caller the user meant.
func authorizationPolicies(w *world) []Message {
	var msgs []Message
	for _, o := range w.byKind[config.AuthorizationPolicy] {
		for i, r := range o.Spec.(*security.AuthorizationPolicy).GetRules() {
			for j, f := range r.GetFrom() {
				p := idx(idx("spec.rules", i)+".from", j) + ".source"
				src := f.GetSource()
				msgs = append(msgs, w.checkNamespaces(o, p+".namespaces", src.GetNamespaces())...)
				msgs = append(msgs, w.checkNamespaces(o, p+".notNamespaces", src.GetNotNamespaces())...)
				msgs = append(msgs, w.checkPrincipals(o, p+".principals", src.GetPrincipals())...)
				msgs = append(msgs, w.checkPrincipals(o, p+".notPrincipals", src.GetNotPrincipals())...)
			}
		}
	}
	return msgs
}

func (w *world) checkNamespaces(o *config.Object, path string, nss []string) []Message {
	var msgs []Message
	for k, ns := range nss {
		if !w.namespaceMatches(ns) {
			msgs = append(msgs, notFound(o, idx(path, k), "namespace", ns))
		}
	}
	return msgs
}

// namespaceMatches reports whether a known namespace matches a pattern
// with an optional leading or trailing "*".
func (w *world) namespaceMatches(pattern string) bool {
	for ns := range w.namespaces {
		switch {
		case pattern == "*":
			return true
		case strings.HasPrefix(pattern, "*") && strings.HasSuffix(ns, pattern[1:]),
			strings.HasSuffix(pattern, "*") && strings.HasPrefix(ns, pattern[:len(pattern)-1]),
			ns == pattern:
			return true
		}
	}
	return false
}

// checkPrincipals looks at principals of the form
// <trust-domain>/ns/<ns>/sa/<name>; patterns with "*" are left alone.
func (w *world) checkPrincipals(o *config.Object, path string, principals []string) []Message {
	var msgs []Message
	for k, pr := range principals {
		parts := strings.Split(pr, "/")
		if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" || strings.Contains(parts[2]+parts[4], "*") {
			continue
		}
		ns, sa := parts[2], parts[4]
		// Kubernetes gives every namespace a "default" account.
		if sa == "default" || w.accounts[ns+"/"+sa] {
			continue
		}
		msgs = append(msgs, principalServiceAccountAbsent.msg(o, idx(path, k),
			"principal %q names service account %s/%s, which no ServiceAccount defines and no workload runs as: no caller can have this identity", pr, ns, sa))
	}
	return msgs
}

// peerAuthenticationConflicts reports more than one selectorless
// PeerAuthentication in a namespace (the root namespace: mesh-wide). Istio
// keeps the oldest, and files carry no age, so the mode in force would be
// arbitrary.
func peerAuthenticationConflicts(w *world) []Message {
	byNS := map[string][]*config.Object{}
	var order []string
	for _, o := range w.byKind[config.PeerAuthentication] {
		if len(o.Spec.(*security.PeerAuthentication).GetSelector().GetMatchLabels()) > 0 {
			continue
		}
		if len(byNS[o.Namespace]) == 0 {
			order = append(order, o.Namespace)
		}
		byNS[o.Namespace] = append(byNS[o.Namespace], o)
	}
	var msgs []Message
	for _, ns := range order {
		pas := byNS[ns]
		if len(pas) < 2 {
			continue
		}
		scope := "namespace-wide for " + ns
		if ns == w.rootNS {
			scope = "mesh-wide"
		}
		for _, o := range pas {
			msgs = append(msgs, multiplePeerAuthentications.msg(o, "",
				"The PeerAuthentications %s have no workload selector and so are all %s: only one can apply and which one is undefined. Merge them into one.",
				names(pas), scope))
		}
	}
	return msgs
}

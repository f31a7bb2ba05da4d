package local

import (
	"slices"
	"sort"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/inforce"
	"github.com/trellismesh/trellis/internal/registry"
	"github.com/trellismesh/trellis/internal/store"
)

// securityPolicies are a snapshot's security policies, gathered once so
// that naming the unenforced ones for every pod of a state write does not
// scan the whole snapshot per pod.
type securityPolicies struct {
	snap   *store.Snapshot
	root   string
	scoped []*config.Object // AuthorizationPolicies and RequestAuthentications
	peer   []*config.Object // PeerAuthentications
}

func newSecurityPolicies(snap *store.Snapshot) *securityPolicies {
	sp := &securityPolicies{snap: snap, root: snap.Mesh.GetRootNamespace()}
	if sp.root == "" {
		sp.root = config.DefaultRootNamespace
	}
	for _, o := range snap.Objects {
		switch o.GroupKind {
		case config.AuthorizationPolicy, config.RequestAuthentication:
			// Enforced policies are left out: those listed use a field
			// the in-force table marks NOT ENFORCED (e.g. an
			// AuthorizationPolicy's CUSTOM action or requestPrincipals).
			if slices.ContainsFunc(o.NotInForce, inforce.Finding.Security) {
				sp.scoped = append(sp.scoped, o)
			}
		case config.PeerAuthentication:
			// Every mode is enforced now (the sidecars' mTLS); one is
			// named only if the table marks a field of it NOT ENFORCED.
			if slices.ContainsFunc(o.NotInForce, inforce.Finding.Security) {
				sp.peer = append(sp.peer, o)
			}
		}
	}
	return sp
}

// unenforced names the security policies that select a workload but are
// not enforced yet (AuthorizationPolicy, RequestAuthentication, and STRICT
// mTLS as the pod's PeerAuthentication in effect), so that `trellis
// status` can show them next to it: a policy that looks like protection
// and is not must be impossible to miss.
func (sp *securityPolicies) unenforced(ns string, labels map[string]string) []string {
	var out []string
	for _, o := range sp.scoped {
		if selects(sp.snap, o, sp.root, ns, labels) {
			out = append(out, o.ID())
		}
	}
	if pa := peerAuthenticationFor(sp.peer, sp.root, ns, labels); pa != nil && strictMTLS(pa.Spec.(*securityv1beta1.PeerAuthentication)) {
		out = append(out, pa.ID()+" (STRICT)")
	}
	sort.Strings(out)
	return out
}

// selects applies Istio's scoping of a workload policy: the root namespace
// covers every namespace, any other only its own; a selector (or the
// Services in targetRefs) narrows it to matching workloads.
func selects(snap *store.Snapshot, o *config.Object, root, ns string, labels map[string]string) bool {
	if o.Namespace != root && o.Namespace != ns {
		return false
	}
	var sel *typev1beta1.WorkloadSelector
	var refs []*typev1beta1.PolicyTargetReference
	switch s := o.Spec.(type) {
	case *securityv1beta1.AuthorizationPolicy:
		sel, refs = s.GetSelector(), append(s.GetTargetRefs(), s.GetTargetRef())
	case *securityv1beta1.RequestAuthentication:
		sel, refs = s.GetSelector(), append(s.GetTargetRefs(), s.GetTargetRef())
	}
	var targeted bool
	for _, r := range refs {
		if r == nil {
			continue
		}
		targeted = true
		if r.GetKind() != "Service" {
			continue // gateways: Trellis runs none
		}
		refNS := r.GetNamespace()
		if refNS == "" {
			refNS = o.Namespace
		}
		if refNS != ns {
			continue
		}
		if svc := snap.Get(config.Key{GroupKind: config.Service, Namespace: ns, Name: r.GetName()}); svc != nil {
			if s, ok := svc.Spec.(*corev1.Service); ok && len(s.Spec.Selector) > 0 && registry.Selects(s.Spec.Selector, labels) {
				return true
			}
		}
	}
	if targeted {
		return false
	}
	return registry.Selects(sel.GetMatchLabels(), labels)
}

// peerAuthenticationFor is the PeerAuthentication in effect for a
// workload, by Istio's precedence: one selecting it in its namespace, else
// its namespace's, else the mesh's (root namespace, no selector).
func peerAuthenticationFor(peers []*config.Object, root, ns string, labels map[string]string) *config.Object {
	var workload, namespace, mesh *config.Object
	for _, o := range peers {
		pa := o.Spec.(*securityv1beta1.PeerAuthentication)
		sel := pa.GetSelector().GetMatchLabels()
		switch {
		case o.Namespace == ns && len(sel) > 0:
			if workload == nil && registry.Selects(sel, labels) {
				workload = o
			}
		case o.Namespace == ns:
			if namespace == nil {
				namespace = o
			}
		case o.Namespace == root && len(sel) == 0:
			if mesh == nil {
				mesh = o
			}
		}
	}
	switch {
	case workload != nil:
		return workload
	case namespace != nil:
		return namespace
	}
	return mesh
}

// strictMTLS reports whether a PeerAuthentication asks for STRICT on any
// port.
func strictMTLS(pa *securityv1beta1.PeerAuthentication) bool {
	if pa.GetMtls().GetMode() == securityv1beta1.PeerAuthentication_MutualTLS_STRICT {
		return true
	}
	for _, m := range pa.GetPortLevelMtls() {
		if m.GetMode() == securityv1beta1.PeerAuthentication_MutualTLS_STRICT {
			return true
		}
	}
	return false
}

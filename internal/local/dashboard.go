package local

import (
	"cmp"
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/dashboard"
	"github.com/trellismesh/trellis/internal/registry"
	"github.com/trellismesh/trellis/internal/store"
)

// startDashboard serves the web dashboard (internal/dashboard) for the
// mesh and says where on Out; mesh.json records the address for
// `trellis dashboard`.
func (m *Mesh) startDashboard() error {
	if m.opts.DashboardAddr == DashboardOff {
		return nil
	}
	d, err := dashboard.Start(dashboard.Options{
		Addr:   m.opts.DashboardAddr,
		Source: meshSource{stateDir: m.stateDir, store: m.cp.Store},
		Log:    m.log.With("component", "dashboard"),
	})
	if err != nil {
		return err
	}
	m.dashboard = d
	m.reporter.dashboard = d.URL()
	fmt.Fprintf(m.opts.Out, "dashboard %s (trellis dashboard opens it)\n", d.URL())
	return nil
}

func (m *Mesh) stopDashboard() {
	if m.dashboard != nil {
		_ = m.dashboard.Close()
		m.dashboard = nil
	}
}

// DashboardOff as Options.DashboardAddr serves no dashboard.
const DashboardOff = "off"

// meshSource is the dashboard's view of the mesh: the pods from
// mesh.json (rewritten on every change, so read without locking the
// supervisor) and the policies from the control plane's store.
type meshSource struct {
	stateDir string
	store    *store.Store
}

func (s meshSource) Pods() []dashboard.Pod {
	st, err := ReadState(s.stateDir)
	if err != nil {
		return nil
	}
	snap := s.store.Snapshot()
	var out []dashboard.Pod
	for _, p := range st.Pods {
		dp := dashboard.Pod{
			Name: p.Name, Namespace: p.Namespace, Workload: p.Deployment, Labels: p.Labels,
			Policies: PoliciesInForce(snap, p.Namespace, p.Labels),
			Created:  p.Created,
		}
		if p.Sidecar != nil {
			dp.AdminSocket = p.Sidecar.AdminSocket
			dp.Connected, dp.Synced, dp.NACKs, dp.LastNACK = p.Sidecar.Connected, p.Sidecar.Synced, p.Sidecar.NACKs, p.Sidecar.LastNACK
		}
		for _, c := range p.Containers {
			if c.Sidecar {
				dp.ProxyLog = c.Log
			}
		}
		out = append(out, dp)
	}
	return out
}

// PoliciesInForce names the config that applies to a workload with these
// labels in namespace ns: its PeerAuthentication (the one Istio picks:
// workload, else namespace, else mesh-wide) with its mode, the
// AuthorizationPolicies and RequestAuthentications selecting it, and the
// DestinationRules and VirtualServices for the Services that select it.
func PoliciesInForce(snap *store.Snapshot, ns string, labels map[string]string) []string {
	root := cmp.Or(snap.Mesh.GetRootNamespace(), config.DefaultRootNamespace)
	var out []string
	peers := snap.OfKind(config.PeerAuthentication)
	if pa := peerAuthenticationFor(peers, root, ns, labels); pa != nil {
		out = append(out, fmt.Sprintf("%s (%s)", pa.ID(), effectiveMode(peers, root, ns, labels)))
	}
	for _, gk := range []config.GroupKind{config.AuthorizationPolicy, config.RequestAuthentication} {
		for _, o := range snap.OfKind(gk) {
			if selects(snap, o, root, ns, labels) {
				out = append(out, o.ID())
			}
		}
	}
	hosts := serviceHosts(snap, ns, labels)
	if len(hosts) > 0 {
		for _, o := range snap.OfKind(config.DestinationRule) {
			dr, ok := o.Spec.(*networking.DestinationRule)
			if !ok || !visible(o, ns, root, dr.GetExportTo()) {
				continue
			}
			if sel := dr.GetWorkloadSelector().GetMatchLabels(); len(sel) > 0 {
				// A selector scopes the rule to the client workloads it
				// names, which are in its own namespace.
				if o.Namespace != ns || !registry.Selects(sel, labels) {
					continue
				}
			}
			if hostMatches(dr.GetHost(), o.Namespace, hosts) {
				out = append(out, o.ID())
			}
		}
		for _, o := range snap.OfKind(config.VirtualService) {
			vs, ok := o.Spec.(*networking.VirtualService)
			if !ok || !visible(o, ns, root, vs.GetExportTo()) {
				continue
			}
			for _, h := range vs.GetHosts() {
				if hostMatches(h, o.Namespace, hosts) {
					out = append(out, o.ID())
					break
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// effectiveMode is the mTLS mode in force: an UNSET mode inherits from
// the namespace's policy, then the mesh's, and is PERMISSIVE at the top,
// as in Istio.
func effectiveMode(peers []*config.Object, root, ns string, labels map[string]string) securityv1beta1.PeerAuthentication_MutualTLS_Mode {
	// Without labels only the namespace's or the mesh's policy is found;
	// with a namespace no object has, only the mesh's.
	for _, scope := range []struct {
		ns     string
		labels map[string]string
	}{{ns, labels}, {ns, nil}, {"", nil}} {
		pa := peerAuthenticationFor(peers, root, scope.ns, scope.labels)
		if pa == nil {
			continue
		}
		if m := pa.Spec.(*securityv1beta1.PeerAuthentication).GetMtls().GetMode(); m != securityv1beta1.PeerAuthentication_MutualTLS_UNSET {
			return m
		}
	}
	return securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE
}

// serviceHosts are the FQDNs of the Services in ns that select labels.
func serviceHosts(snap *store.Snapshot, ns string, labels map[string]string) []string {
	var out []string
	for _, o := range snap.OfKind(config.Service) {
		svc, ok := o.Spec.(*corev1.Service)
		if !ok || o.Namespace != ns || len(svc.Spec.Selector) == 0 || !registry.Selects(svc.Spec.Selector, labels) {
			continue
		}
		out = append(out, o.Name+"."+o.Namespace+".svc.cluster.local")
	}
	return out
}

// visible reports whether config in o's namespace exported as exportTo
// reaches namespace ns (Istio's default: everywhere).
func visible(o *config.Object, ns, root string, exportTo []string) bool {
	if len(exportTo) == 0 || o.Namespace == root {
		return true
	}
	for _, e := range exportTo {
		if e == "*" || e == ns || e == "." && o.Namespace == ns {
			return true
		}
	}
	return false
}

// hostMatches reports whether a config host (short names resolved in the
// config's namespace, "*." wildcards) names one of the FQDNs.
func hostMatches(host, configNS string, fqdns []string) bool {
	if host == "" {
		return false
	}
	if !strings.Contains(host, ".") && host != "*" {
		host += "." + configNS + ".svc.cluster.local"
	}
	for _, f := range fqdns {
		switch {
		case host == "*", host == f:
			return true
		case strings.HasPrefix(host, "*.") && strings.HasSuffix(f, host[1:]):
			return true
		case strings.Count(host, ".") == 1 && host+".svc.cluster.local" == f:
			return true
		}
	}
	return false
}

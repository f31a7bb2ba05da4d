package registry

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
)

// Visible reports whether a proxy in namespace ns may see s, by s's
// exportTo as Istio reads it: empty or containing "*" means everywhere
// (and "*" overrides the rest), otherwise "~" means nowhere (and overrides
// the rest), otherwise "." is the service's own namespace and other values
// name namespaces. Note that naming other namespaces hides the service
// from its own unless "." is listed too, as in Istio.
func (r *Registry) Visible(s *Service, ns string) bool {
	if len(s.ExportTo) == 0 {
		return true
	}
	for _, e := range s.ExportTo {
		if e == "*" {
			return true
		}
	}
	for _, e := range s.ExportTo {
		if e == "~" {
			return false
		}
	}
	for _, e := range s.ExportTo {
		if e == ns || (e == "." && s.Namespace == ns) {
			return true
		}
	}
	return false
}

// SidecarFor picks the Sidecar resource that applies to a workload in ns
// with labels, as Istio does: one in ns whose workloadSelector matches,
// else ns's Sidecar without selector, else the root namespace's Sidecar
// without selector; nil if none. Istio breaks ties between several
// candidates by age; files have none, so the first by name wins.
func SidecarFor(objs []*config.Object, ns string, labels map[string]string, rootNamespace string) *config.Object {
	var selected, nsDefault, rootDefault *config.Object
	first := func(cur, o *config.Object) *config.Object {
		if cur == nil || o.Name < cur.Name {
			return o
		}
		return cur
	}
	for _, o := range objs {
		sc, ok := o.Spec.(*networking.Sidecar)
		if !ok || o.GroupKind != config.Sidecar {
			continue
		}
		hasSelector := sc.WorkloadSelector != nil
		switch {
		case o.Namespace == ns && hasSelector:
			if Selects(sc.WorkloadSelector.Labels, labels) {
				selected = first(selected, o)
			}
		case o.Namespace == ns:
			nsDefault = first(nsDefault, o)
		case o.Namespace == rootNamespace && !hasSelector:
			rootDefault = first(rootDefault, o)
		}
	}
	switch {
	case selected != nil:
		return selected
	case nsDefault != nil:
		return nsDefault
	}
	return rootDefault
}

// ForProxy returns the services a proxy in ns sees, sorted by hostname:
// the Visible ones, narrowed by the Sidecar's egress hosts when sidecar is
// not nil. Egress hosts are "namespace/host": namespace "*" is any, "." the
// proxy's own (also for a Sidecar from the root namespace, as in Istio),
// "~" none; host "*" is any, "*.example.com" any host under example.com,
// anything else exactly that hostname. A Sidecar without egress imports
// everything visible ("*/*"), as in Istio.
func (r *Registry) ForProxy(ns string, sidecar *config.Object) []*Service {
	var hosts []egressHost
	if sidecar != nil {
		if sc, ok := sidecar.Spec.(*networking.Sidecar); ok {
			hosts = egressHosts(sc)
		}
	}
	var out []*Service
	for _, s := range r.services {
		if !r.Visible(s, ns) {
			continue
		}
		if sidecar != nil && !importedBy(hosts, s, ns) {
			continue
		}
		out = append(out, s)
	}
	return out
}

type egressHost struct{ ns, host string }

func egressHosts(sc *networking.Sidecar) []egressHost {
	var out []egressHost
	for _, l := range sc.Egress {
		for _, h := range l.Hosts {
			ns, host, ok := strings.Cut(h, "/")
			if !ok {
				// Validation requires the namespace; read a bare host the
				// lenient way rather than importing nothing.
				ns, host = "*", h
			}
			out = append(out, egressHost{ns: ns, host: strings.ToLower(host)})
		}
	}
	if len(sc.Egress) == 0 {
		out = append(out, egressHost{ns: "*", host: "*"})
	}
	return out
}

func importedBy(hosts []egressHost, s *Service, proxyNS string) bool {
	name := strings.ToLower(s.Hostname)
	for _, h := range hosts {
		switch h.ns {
		case "~":
			continue
		case "*":
		case ".":
			if s.Namespace != proxyNS {
				continue
			}
		default:
			if s.Namespace != h.ns {
				continue
			}
		}
		if h.host == name || wildcardCovers(h.host, name) {
			return true
		}
	}
	return false
}

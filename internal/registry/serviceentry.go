package registry

import (
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
)

// serviceEntry returns one Service per host of a ServiceEntry.
func (w *world) serviceEntry(o *config.Object) []*Service {
	se := o.Spec.(*networking.ServiceEntry)
	var out []*Service
	for _, host := range se.Hosts {
		s := &Service{
			Hostname:     host,
			Name:         o.Name,
			Namespace:    o.Namespace,
			Addresses:    slices.Clone(se.Addresses),
			Labels:       o.Labels,
			ExportTo:     slices.Clone(se.ExportTo),
			Resolution:   seResolution(se.Resolution),
			MeshExternal: se.Location == networking.ServiceEntry_MESH_EXTERNAL,
		}
		for _, p := range se.Ports {
			s.Ports = append(s.Ports, Port{Name: p.Name, Port: p.Number, Protocol: ParseProtocol(p.Protocol)})
		}
		w.seInstances(o.Namespace, se, host, s)
		s.sortInstances()
		out = append(out, s)
	}
	return out
}

func seResolution(r networking.ServiceEntry_Resolution) Resolution {
	switch r {
	case networking.ServiceEntry_STATIC:
		return ResolutionStatic
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN, networking.ServiceEntry_DYNAMIC_DNS:
		return ResolutionDNS
	}
	return ResolutionNone
}

// seDefaultPort is where an endpoint serves a ServiceEntry port when its
// own ports map says nothing.
func seDefaultPort(p *networking.ServicePort) uint32 {
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Number
}

func seEntryPort(we *networking.WorkloadEntry, p *networking.ServicePort) uint32 {
	if n, ok := we.Ports[p.Name]; ok && p.Name != "" {
		return n
	}
	return seDefaultPort(p)
}

func (w *world) seInstances(ns string, se *networking.ServiceEntry, host string, s *Service) {
	switch {
	case se.WorkloadSelector != nil:
		sel := se.WorkloadSelector.Labels
		for _, we := range w.entries.match(ns, sel) {
			for _, p := range se.Ports {
				s.addEntryInstance(p.Number, we.ns, we.name, we.spec, seEntryPort(we.spec, p), we.proxyless)
			}
		}
		for _, pd := range w.podsByLabel.match(ns, sel) {
			for _, p := range se.Ports {
				// Numbers resolve as is, so the only failure is impossible.
				port, _ := podTargetPort(pd.spec, intOrZero(seDefaultPort(p)), p.Number, p.Name)
				s.addPodInstance(p.Number, pd, port)
			}
		}
	case len(se.Endpoints) > 0:
		for _, ep := range se.Endpoints {
			for _, p := range se.Ports {
				s.addEntryInstance(p.Number, ns, "", ep, seEntryPort(ep, p), false)
			}
		}
	case se.Resolution == networking.ServiceEntry_DNS || se.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN:
		// Without endpoints the host itself is resolved, as in Istio; a
		// wildcard has no single name to resolve.
		if !strings.HasPrefix(host, "*") {
			for _, p := range se.Ports {
				s.addInstance(p.Number, &Instance{Address: host, Port: seDefaultPort(p), Namespace: ns, Ready: true})
			}
		}
	}
}

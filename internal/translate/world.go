package translate

import (
	"sync"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/hostmatch"
	"github.com/trellismesh/trellis/internal/registry"
	"github.com/trellismesh/trellis/internal/store"
)

// World is one config snapshot with the indexes translation needs, built
// once per snapshot and shared by every proxy's translation.
type World struct {
	Snap *store.Snapshot
	Reg  *registry.Registry
	Mesh *meshv1alpha1.MeshConfig

	domain string
	vs     []*config.Object
	dr     []*config.Object
	splits []*config.Object
	routes []*config.Object // Gateway API HTTPRoute and GRPCRoute
	// labelSensitive is set when some routing config depends on the
	// client's labels, so proxies with different labels need their own
	// translation.
	labelSensitive bool
	// locality says whether load assignments depend on the proxy's
	// locality (locality.go).
	locality localityIndex
	// sidecars are the Sidecar objects and inbound the service ports that
	// select each address: every proxy's ScopeKey and Local translation
	// looks them up, so a push to a thousand proxies must not rescan the
	// whole world for each.
	sidecars []*config.Object
	inbound  map[string][]inboundTarget
	// expanded holds root VirtualServices with their delegates merged in,
	// and problems the http routes that cannot be served as written.
	expanded map[*config.Object]*expanded
	problems []RouteProblem
	// reported dedupes the log lines about dropped routes: every scope's
	// translation meets the same broken route.
	reported sync.Map
	// verdicts holds the sidecar decoder's verdict on resources that do
	// not depend on the proxy (guard.go), shared by every scope's
	// translation.
	verdicts sync.Map
}

// inboundTarget is a port a workload serves, with the protocol of the
// service port that targets it.
type inboundTarget struct {
	port     uint32
	protocol registry.Protocol
}

// NewWorld indexes a snapshot.
func NewWorld(snap *store.Snapshot) *World {
	mesh := snap.Mesh
	if mesh == nil {
		mesh = config.DefaultMeshConfig()
	}
	domain := mesh.GetTrustDomain()
	if domain == "" {
		domain = "cluster.local"
	}
	w := &World{Snap: snap, Mesh: mesh, domain: domain}
	w.Reg = registry.Build(snap.Objects, "cluster.local")
	w.vs = snap.OfKind(config.VirtualService)
	w.dr = mergeDestinationRules(snap.OfKind(config.DestinationRule), w.Reg.FQDN)
	w.splits = snap.OfKind(config.TrafficSplit)
	w.routes = append(snap.OfKind(config.HTTPRoute), snap.OfKind(config.GRPCRoute)...)
	w.sidecars = snap.OfKind(config.Sidecar)
	w.expandDelegates()
	w.inbound = map[string][]inboundTarget{}
	for _, svc := range w.Reg.Services() {
		for _, port := range svc.Ports {
			for _, in := range svc.Instances[port.Port] {
				w.inbound[in.Address] = append(w.inbound[in.Address], inboundTarget{port: in.Port, protocol: port.Protocol})
			}
		}
	}
	for _, o := range w.vs {
		for _, hr := range o.Spec.(*networking.VirtualService).GetHttp() {
			for _, m := range hr.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					w.labelSensitive = true
				}
			}
		}
		if l4SourceLabels(o.Spec.(*networking.VirtualService)) {
			w.labelSensitive = true
		}
	}
	for _, o := range w.dr {
		if len(o.Spec.(*networking.DestinationRule).GetWorkloadSelector().GetMatchLabels()) > 0 {
			w.labelSensitive = true
		}
	}
	return w
}

// RootNamespace is the mesh root namespace.
func (w *World) RootNamespace() string {
	if ns := w.Mesh.GetRootNamespace(); ns != "" {
		return ns
	}
	return config.DefaultRootNamespace
}

// ScopeKey identifies proxies that receive identical Shared resources. Labels
// count only when some config looks at the client's labels (sourceLabels
// matches, DestinationRule workloadSelector, Sidecar selectors); otherwise a
// thousand pods in a namespace share one translation.
func (w *World) ScopeKey(p *Proxy) string {
	key := string(p.Generator) + "|" + p.InterceptionMode + "|" + p.Namespace + grpcScopeKey(p)
	if sc := registry.SidecarFor(w.sidecars, p.Namespace, p.Labels, w.RootNamespace()); sc != nil {
		key += "|sidecar=" + sc.Namespace + "/" + sc.Name
	}
	if w.labelSensitive {
		key += "|" + p.labelKey()
	}
	key += w.localityScopeKey(p)
	key += w.telemetryScopeKey(p) // telemetry.go
	return key
}

// exported reports whether an object with exportTo list may be seen from ns.
func exported(exportTo []string, objNS, ns string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if objNS == ns {
				return true
			}
		case "~":
		default:
			if e == ns {
				return true
			}
		}
	}
	return false
}

// appliesToMesh reports whether a VirtualService binds to sidecars: no
// gateways listed, or the reserved "mesh" among them.
func appliesToMesh(vs *networking.VirtualService) bool {
	if len(vs.GetGateways()) == 0 {
		return true
	}
	for _, g := range vs.GetGateways() {
		if g == "mesh" {
			return true
		}
	}
	return false
}

// virtualServiceFor returns the VirtualService that routes hostname for a
// proxy, or nil, with its delegates merged in. When several claim the
// host, the one in the proxy's own namespace wins, then the first by
// namespace/name; exact hosts beat wildcards (the analyzer warns about such
// conflicts).
func (w *World) virtualServiceFor(p *Proxy, hostname string) (*config.Object, *networking.VirtualService) {
	var best *config.Object
	bestScore := -1
	for _, o := range w.vs {
		vs := o.Spec.(*networking.VirtualService)
		if !appliesToMesh(vs) || !exported(vs.GetExportTo(), o.Namespace, p.Namespace) {
			continue
		}
		for _, h := range vs.GetHosts() {
			fq := w.Reg.FQDN(h, o.Namespace)
			if !hostmatch.Within(hostname, fq) {
				continue
			}
			score := 0
			if fq == hostname {
				score += 2
			}
			if o.Namespace == p.Namespace {
				score++
			}
			if score > bestScore {
				best, bestScore = o, score
			}
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, w.effective(best)
}

// destinationRuleFor returns the DestinationRule for hostname as Istio
// looks it up: the proxy's namespace first, then the service's namespace,
// then the root namespace; exact hosts beat wildcards.
func (w *World) destinationRuleFor(p *Proxy, hostname, svcNS string) *networking.DestinationRule {
	if o := w.destinationRuleObject(p, hostname, svcNS); o != nil {
		return o.Spec.(*networking.DestinationRule)
	}
	return nil
}

// destinationRuleObject is destinationRuleFor with the object's metadata,
// for the annotations Trellis reads.
func (w *World) destinationRuleObject(p *Proxy, hostname, svcNS string) *config.Object {
	var best *config.Object
	bestScore := -1
	for _, o := range w.dr {
		dr := o.Spec.(*networking.DestinationRule)
		if !exported(dr.GetExportTo(), o.Namespace, p.Namespace) {
			continue
		}
		if sel := dr.GetWorkloadSelector().GetMatchLabels(); len(sel) > 0 && (o.Namespace != p.Namespace || !labelsMatch(sel, p.Labels)) {
			continue
		}
		fq := w.Reg.FQDN(dr.GetHost(), o.Namespace)
		if !hostmatch.Within(hostname, fq) {
			continue
		}
		score := 0
		switch o.Namespace {
		case p.Namespace:
			score = 3
		case svcNS:
			score = 2
		case w.RootNamespace():
			score = 1
		}
		score *= 2
		if fq == hostname {
			score++
		}
		if score > bestScore {
			best, bestScore = o, score
		}
	}
	return best
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// egress returns what a proxy may reach, per service port: exportTo and
// its Sidecar's egress listeners.
func (w *World) egress(p *Proxy) registry.Egress {
	sc := registry.SidecarFor(w.sidecars, p.Namespace, p.Labels, w.RootNamespace())
	return w.Reg.Egress(p.Namespace, sc)
}

package analyze

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/hostmatch"
	"github.com/trellismesh/trellis/internal/translate"
)

// meshGateway is the reserved gateway name for sidecars.
const meshGateway = "mesh"

// destination is one route or mirror destination with its field path.
type destination struct {
	d      *networking.Destination
	path   string // of the Destination message
	mirror bool
}

func destinations(vs *networking.VirtualService) []destination {
	var out []destination
	for i, r := range vs.GetHttp() {
		p := idx("spec.http", i)
		for j, rd := range r.GetRoute() {
			out = append(out, destination{d: rd.GetDestination(), path: idx(p+".route", j) + ".destination"})
		}
		if m := r.GetMirror(); m != nil {
			out = append(out, destination{d: m, path: p + ".mirror", mirror: true})
		}
		for j, m := range r.GetMirrors() {
			out = append(out, destination{d: m.GetDestination(), path: idx(p+".mirrors", j) + ".destination", mirror: true})
		}
	}
	for i, r := range vs.GetTcp() {
		for j, rd := range r.GetRoute() {
			out = append(out, destination{d: rd.GetDestination(), path: idx(idx("spec.tcp", i)+".route", j) + ".destination"})
		}
	}
	for i, r := range vs.GetTls() {
		for j, rd := range r.GetRoute() {
			out = append(out, destination{d: rd.GetDestination(), path: idx(idx("spec.tls", i)+".route", j) + ".destination"})
		}
	}
	return out
}

// virtualServiceDestinations reports subsets no DestinationRule defines and
// ports a known service does not have. A destination host that is not a
// known service is fine: it may be external (outbound traffic is allowed).
func virtualServiceDestinations(w *world) []Message {
	subsets := map[string]bool{} // host + "|" + subset
	for _, o := range w.byKind[config.DestinationRule] {
		dr := o.Spec.(*networking.DestinationRule)
		for _, s := range dr.GetSubsets() {
			subsets[w.fqdn(dr.GetHost(), o.Namespace)+"|"+s.GetName()] = true
		}
	}
	var msgs []Message
	for _, o := range w.byKind[config.VirtualService] {
		for _, d := range destinations(o.Spec.(*networking.VirtualService)) {
			host := w.fqdn(d.d.GetHost(), o.Namespace)
			if sub := d.d.GetSubset(); sub != "" && !subsets[host+"|"+sub] {
				ref := "host+subset in destinationrule"
				if d.mirror {
					ref = "mirror+subset in destinationrule"
				}
				msgs = append(msgs, notFound(o, d.path+".subset", ref, d.d.GetHost()+"+"+sub))
			}
			if port := d.d.GetPort().GetNumber(); port != 0 {
				if s := w.services[host]; s != nil && len(s.ports) > 0 && !slices.Contains(s.ports, port) {
					msgs = append(msgs, notFound(o, d.path+".port.number", "host:port", fmt.Sprintf("%s:%d", d.d.GetHost(), port)))
				}
			}
		}
	}
	return msgs
}

// virtualServiceGateways reports gateways that do not exist and gateways
// that serve none of the VirtualService's hosts (the routes would never be
// used there).
func virtualServiceGateways(w *world) []Message {
	var msgs []Message
	for _, o := range w.byKind[config.VirtualService] {
		vs := o.Spec.(*networking.VirtualService)
		for i, g := range vs.GetGateways() {
			if g == meshGateway {
				continue
			}
			ns, name, ok := strings.Cut(g, "/")
			if !ok {
				ns, name = o.Namespace, g
			}
			key := config.Key{GroupKind: config.Gateway, Namespace: ns, Name: name}
			path := idx("spec.gateways", i)
			if gw := w.keys[key]; gw != nil {
				if !istioGatewayServes(gw, vs.GetHosts(), o.Namespace) {
					msgs = append(msgs, virtualServiceHostNotFoundInGW.msg(o, path,
						"one or more host %v defined in VirtualService %s/%s not found in Gateway %s/%s.", vs.GetHosts(), o.Namespace, o.Name, ns, name))
				}
				continue
			}
			key.GroupKind = config.GatewayAPIGate
			if gw := w.keys[key]; gw != nil {
				if !kubeGatewayServes(gw, vs.GetHosts()) {
					msgs = append(msgs, virtualServiceHostNotFoundInGW.msg(o, path,
						"one or more host %v defined in VirtualService %s/%s not found in Gateway %s/%s.", vs.GetHosts(), o.Namespace, o.Name, ns, name))
				}
				continue
			}
			msgs = append(msgs, notFound(o, path, "gateway", g))
		}
	}
	return msgs
}

// istioGatewayServes reports whether a server of the Gateway accepts one of
// hosts for a VirtualService in namespace vsNS. Server hosts may be
// namespace-scoped: "./host", "ns/host", "*/host".
func istioGatewayServes(gw *config.Object, hosts []string, vsNS string) bool {
	for _, srv := range gw.Spec.(*networking.Gateway).GetServers() {
		for _, gh := range srv.GetHosts() {
			if ns, h, ok := strings.Cut(gh, "/"); ok {
				if ns == "." {
					ns = gw.Namespace
				}
				if ns != "*" && ns != vsNS {
					continue
				}
				gh = h
			}
			for _, h := range hosts {
				if hostsOverlap(gh, h) {
					return true
				}
			}
		}
	}
	return false
}

func kubeGatewayServes(gw *config.Object, hosts []string) bool {
	for _, l := range gw.Spec.(*gatewayv1.Gateway).Spec.Listeners {
		if l.Hostname == nil || *l.Hostname == "" {
			return true
		}
		for _, h := range hosts {
			if hostsOverlap(string(*l.Hostname), h) {
				return true
			}
		}
	}
	return false
}

// hostsOverlap is hostmatch.Overlap for names as users wrote them, in any
// case (Gateway API hostnames reach the analyzer unnormalised).
func hostsOverlap(a, b string) bool {
	return hostmatch.Overlap(strings.ToLower(a), strings.ToLower(b))
}

// meshScope is where a VirtualService applies to sidecars: every
// namespace (nil) or the listed ones.
func meshScope(o *config.Object, exportTo []string) map[string]bool {
	if len(exportTo) == 0 || slices.Contains(exportTo, "*") {
		return nil
	}
	out := map[string]bool{}
	for _, ns := range exportTo {
		if ns == "." {
			ns = o.Namespace
		}
		out[ns] = true
	}
	return out
}

func scopesOverlap(a, b map[string]bool) bool {
	if a == nil || b == nil {
		return true
	}
	for ns := range a {
		if b[ns] {
			return true
		}
	}
	return false
}

func onMesh(vs *networking.VirtualService) bool {
	return len(vs.GetGateways()) == 0 || slices.Contains(vs.GetGateways(), meshGateway)
}

// meshGatewayHostConflicts reports hosts that more than one mesh
// VirtualService routes, where their exportTo scopes meet.
func meshGatewayHostConflicts(w *world) []Message {
	type entry struct {
		o     *config.Object
		path  string
		scope map[string]bool
	}
	byHost := map[string][]entry{}
	for _, o := range w.byKind[config.VirtualService] {
		vs := o.Spec.(*networking.VirtualService)
		if !onMesh(vs) {
			continue
		}
		scope := meshScope(o, vs.GetExportTo())
		for i, h := range vs.GetHosts() {
			host := w.fqdn(h, o.Namespace)
			if !slices.ContainsFunc(byHost[host], func(e entry) bool { return e.o == o }) {
				byHost[host] = append(byHost[host], entry{o, idx("spec.hosts", i), scope})
			}
		}
	}
	var msgs []Message
	for host, es := range byHost {
		for i, e := range es {
			others := []*config.Object{e.o}
			for j, f := range es {
				if j != i && scopesOverlap(e.scope, f.scope) {
					others = append(others, f.o)
				}
			}
			if len(others) < 2 {
				continue
			}
			msgs = append(msgs, conflictingMeshGatewayHosts.msg(e.o, e.path,
				"The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
				names(others), host))
		}
	}
	return msgs
}

// routingConfigConflicts reports a host routed by configs of different
// APIs (a mesh VirtualService, an SMI TrafficSplit, a Gateway API route
// attached to the Service) or by two TrafficSplits: each API describes all
// of the host's traffic, so only one can be what is served.
func routingConfigConflicts(w *world) []Message {
	type entry struct {
		o    *config.Object
		path string
	}
	byHost := map[string][]entry{}
	add := func(host string, o *config.Object, path string) {
		for _, e := range byHost[host] {
			if e.o == o {
				return
			}
		}
		byHost[host] = append(byHost[host], entry{o, path})
	}
	for _, o := range w.byKind[config.VirtualService] {
		vs := o.Spec.(*networking.VirtualService)
		if onMesh(vs) {
			for i, h := range vs.GetHosts() {
				add(w.fqdn(h, o.Namespace), o, idx("spec.hosts", i))
			}
		}
	}
	for _, o := range w.byKind[config.TrafficSplit] {
		add(w.fqdn(trafficSplitRoot(o), o.Namespace), o, "spec.service")
	}
	for _, r := range w.routes() {
		for i, p := range r.parents {
			if isServiceRef(p.Group, p.Kind) {
				add(w.fqdn(string(p.Name), refNamespace(p.Namespace, r.obj.Namespace)), r.obj, idx("spec.parentRefs", i))
			}
		}
	}
	var msgs []Message
	for host, es := range byHost {
		kinds := map[string]bool{}
		splits := 0
		for _, e := range es {
			kind := e.o.Kind
			if e.o.GroupKind == config.GRPCRoute {
				kind = config.HTTPRoute.Kind // Gateway API routes of one parent merge
			}
			kinds[kind] = true
			if e.o.GroupKind == config.TrafficSplit {
				splits++
			}
		}
		if len(kinds) < 2 && splits < 2 {
			continue
		}
		ids := make([]string, 0, len(es))
		for _, e := range es {
			ids = append(ids, e.o.ID())
		}
		sort.Strings(ids)
		for _, e := range es {
			msgs = append(msgs, multipleRoutingConfigs.msg(e.o, e.path,
				"host %s has more than one routing config (%s): each describes all of the host's traffic, so keep one of them",
				host, strings.Join(ids, ", ")))
		}
	}
	return msgs
}

// virtualServiceRoutesServed reports http routes that are not served as
// written (TRL0008): a delegation that cannot be followed, a delegate route
// outside its root's match, a route the sidecar would refuse. The
// translator decides what it drops, so the analyzer asks it rather than
// keeping a second copy of its rules.
func virtualServiceRoutesServed(w *world) []Message {
	if len(w.byKind[config.VirtualService]) == 0 {
		return nil
	}
	var msgs []Message
	for _, p := range translate.RouteProblems(w.translation()) {
		k := routeNotServed
		if p.OutsideRoot {
			k.severity = Warning
		}
		msgs = append(msgs, k.msg(p.Object, p.Path, "%s", p.Detail))
	}
	return msgs
}

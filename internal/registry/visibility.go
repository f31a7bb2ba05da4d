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

// ForProxy returns the services a proxy in ns reaches on at least one
// port, sorted by hostname: r.Egress(ns, sidecar).Services().
func (r *Registry) ForProxy(ns string, sidecar *config.Object) []*Service {
	return r.Egress(ns, sidecar).Services()
}

// Egress is what a proxy in one namespace may reach: the ports of the
// Visible services, narrowed by its Sidecar's egress listeners as Istio
// documents them. A listener with a port imports its hosts on that port
// only, and on that port it alone decides (the listener with "the most
// specific port" wins over the catch-all); the listener without a port
// imports its hosts on every other port. No Sidecar, or one without
// egress, imports everything visible ("*/*"), as in Istio.
//
// Egress hosts are "namespace/host": namespace "*" is any, "." the
// proxy's own (also for a Sidecar from the root namespace, as in Istio),
// "~" none; host "*" is any, "*.example.com" any host under example.com,
// anything else exactly that hostname.
//
// Two kinds of listener are read as Istio reads them without building
// their own listener, since bind is not in force: an HTTP_PROXY listener
// (Istio's forward proxy, which matches no port) adds its hosts to the
// catch-all's, and a unix socket listener (port 0) imports nothing over
// IP. A UDP egress port imports nothing, since sidecars carry no UDP.
//
// Egress answers per port without allocating: a scope's translation asks
// for every port of every service.
type Egress struct {
	r  *Registry
	ns string
	eg *egress // nil: every port of every visible service
}

// Egress compiles the egress listeners of sidecar (nil for none) for a
// proxy in ns.
func (r *Registry) Egress(ns string, sidecar *config.Object) Egress {
	e := Egress{r: r, ns: ns}
	if sidecar != nil {
		if sc, ok := sidecar.Spec.(*networking.Sidecar); ok && len(sc.Egress) > 0 {
			e.eg = egressOf(sc)
		}
	}
	return e
}

// Services returns the services reached on at least one port, sorted by
// hostname.
func (e Egress) Services() []*Service {
	var out []*Service
	for _, s := range e.r.services {
		if !e.r.Visible(s, e.ns) {
			continue
		}
		if e.eg != nil && !e.eg.importsAny(s, e.ns) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// Port says whether the proxy reaches s on p, and if so the protocol its
// outbound listener for the port speaks: the protocol of the egress
// listener that names the port (Istio's listener protocol; without one
// the port is sniffed), else the service port's. Clusters keep the
// service port's protocol, as Istio's do. s must be one of Services.
func (e Egress) Port(s *Service, p Port) (Protocol, bool) {
	if e.eg == nil {
		return p.Protocol, true
	}
	if l := e.eg.forPort(p.Port); l != nil {
		return l.protocol, !l.udp && importedBy(l.hosts, s, e.ns)
	}
	return p.Protocol, importedBy(e.eg.catchAll, s, e.ns)
}

// egress is a Sidecar's egress listeners, compiled for Egress.
type egress struct {
	catchAll []egressHost
	// byPort are the listeners with a port number, in order; the first
	// for a number decides it (validation rejects duplicates; Istio's
	// route lookup takes the first too).
	byPort []portListener
}

type portListener struct {
	number   uint32
	hosts    []egressHost
	protocol Protocol
	udp      bool
}

func egressOf(sc *networking.Sidecar) *egress {
	eg := &egress{}
	for _, l := range sc.Egress {
		if l == nil {
			continue
		}
		hosts := parseEgressHosts(l.Hosts)
		switch {
		case l.Port == nil, strings.EqualFold(l.Port.Protocol, "HTTP_PROXY"):
			eg.catchAll = append(eg.catchAll, hosts...)
		case l.Port.Number == 0:
			// A unix socket: only its own listener could reach the hosts.
		default:
			proto := Unsupported
			if l.Port.Protocol != "" {
				proto = ParseProtocol(l.Port.Protocol)
			}
			eg.byPort = append(eg.byPort, portListener{number: l.Port.Number, hosts: hosts, protocol: proto,
				udp: strings.EqualFold(l.Port.Protocol, "UDP")})
		}
	}
	return eg
}

// importsAny says whether the listeners import s on some port.
func (eg *egress) importsAny(s *Service, ns string) bool {
	triedCatchAll := false
	for _, p := range s.Ports {
		if l := eg.forPort(p.Port); l != nil {
			if !l.udp && importedBy(l.hosts, s, ns) {
				return true
			}
			continue
		}
		if !triedCatchAll {
			triedCatchAll = true
			if importedBy(eg.catchAll, s, ns) {
				return true
			}
		}
	}
	return false
}

func (eg *egress) forPort(n uint32) *portListener {
	for i := range eg.byPort {
		if eg.byPort[i].number == n {
			return &eg.byPort[i]
		}
	}
	return nil
}

type egressHost struct{ ns, host string }

func parseEgressHosts(hosts []string) []egressHost {
	out := make([]egressHost, 0, len(hosts))
	for _, h := range hosts {
		ns, host, ok := strings.Cut(h, "/")
		if !ok {
			// Validation requires the namespace; read a bare host the
			// lenient way rather than importing nothing.
			ns, host = "*", h
		}
		out = append(out, egressHost{ns: ns, host: strings.ToLower(host)})
	}
	return out
}

func importedBy(hosts []egressHost, s *Service, proxyNS string) bool {
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
		if egressCovers(h.host, s.Hostname) {
			return true
		}
	}
	return false
}

// egressCovers is wildcardCovers for a lower-case pattern and a hostname
// of any case, without lowering the hostname: Egress asks per port, and
// lowering every hostname was most of its cost.
func egressCovers(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*") // "*.example.com": ".example.com"
	if !ok || !strings.HasPrefix(suffix, ".") {
		return strings.EqualFold(pattern, host)
	}
	if h, ok := strings.CutPrefix(host, "*"); ok {
		// A wildcard ServiceEntry host is covered when all it names is.
		return len(h) >= len(suffix) && strings.EqualFold(h[len(h)-len(suffix):], suffix)
	}
	return len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix)
}

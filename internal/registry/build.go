package registry

import (
	"cmp"
	"net/netip"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trellismesh/trellis/internal/config"
)

// DefaultDomainSuffix is the cluster domain used when Build is given none.
const DefaultDomainSuffix = "cluster.local"

// ExportToAnnotation is the Service annotation Istio reads for exportTo.
const ExportToAnnotation = "networking.istio.io/exportTo"

// serviceNameLabel links an EndpointSlice to its Service.
const serviceNameLabel = "kubernetes.io/service-name"

// localityLabel lets a pod declare its locality, dot-separated because '/'
// is not allowed in label values (Istio's istio-locality label).
const localityLabel = "istio-locality"

// Registry is an immutable view of services. Its Services, Instances and
// their maps are shared with every caller and must not be modified.
type Registry struct {
	suffix    string
	services  []*Service          // sorted by Hostname
	byHost    map[string]*Service // every Hostname lowercased, wildcards included
	wildcards []*Service          // wildcard Hostnames, most specific first
	conflicts []string
}

// Build builds the registry from validated objects. domainSuffix is the
// cluster domain, "cluster.local".
//
// A hostname is defined once. When several objects define it, a Kubernetes
// Service wins over any ServiceEntry (the Service is what the cluster's own
// DNS answers for, so the mesh must agree with it), and among ServiceEntries
// the first by namespace then name wins (Istio keeps the oldest, but files
// carry no creation time and output must not depend on input order). The
// losers are reported by Conflicts.
func Build(objs []*config.Object, domainSuffix string) *Registry {
	if domainSuffix == "" {
		domainSuffix = DefaultDomainSuffix
	}
	w := index(objs)
	r := &Registry{suffix: domainSuffix, byHost: map[string]*Service{}}
	owner := map[string]string{} // hostname -> ID of the object defining it
	add := func(o *config.Object, s *Service) {
		key := strings.ToLower(s.Hostname)
		if prev, ok := owner[key]; ok {
			r.conflicts = append(r.conflicts, o.ID()+": host "+s.Hostname+" is already defined by "+prev+"; ignored")
			return
		}
		owner[key] = o.ID()
		r.byHost[strings.ToLower(s.Hostname)] = s
		r.services = append(r.services, s)
	}
	for _, o := range w.services {
		if s := w.kubeService(o, domainSuffix); s != nil {
			add(o, s)
		}
	}
	for _, o := range w.serviceEntries {
		for _, s := range w.serviceEntry(o) {
			add(o, s)
		}
	}
	slices.SortFunc(r.services, func(a, b *Service) int { return strings.Compare(a.Hostname, b.Hostname) })
	for _, s := range r.services {
		if strings.HasPrefix(s.Hostname, "*") {
			r.wildcards = append(r.wildcards, s)
		}
	}
	// Longest suffix first, so the most specific wildcard answers a lookup.
	slices.SortStableFunc(r.wildcards, func(a, b *Service) int { return len(b.Hostname) - len(a.Hostname) })
	return r
}

// Services returns every service sorted by Hostname.
func (r *Registry) Services() []*Service { return r.services }

// Conflicts describes the objects (or hosts of them) that Build ignored
// because another object already defined the same hostname, sorted.
func (r *Registry) Conflicts() []string {
	out := slices.Clone(r.conflicts)
	slices.Sort(out)
	return out
}

// world indexes the objects a registry is built from.
type world struct {
	services       []*config.Object
	serviceEntries []*config.Object
	slices         map[nsName][]*discoveryv1.EndpointSlice
	pods           map[nsName]*pod
	podsByLabel    labelIndex[*pod]
	entries        labelIndex[*workloadEntry]
}

type nsName struct{ ns, name string }

type pod struct {
	ns, name  string
	labels    map[string]string
	spec      *corev1.Pod
	proxyless bool
}

type workloadEntry struct {
	ns, name  string
	spec      *networking.WorkloadEntry
	proxyless bool
}

// labelIndex finds the objects a selector matches without comparing every
// selector with every object: a selector's objects all carry its first
// key=value pair, so only that pair's objects are checked.
type labelIndex[T any] map[string]map[labelPair][]labelled[T]

type labelPair struct{ key, value string }

type labelled[T any] struct {
	labels map[string]string
	v      T
}

func (x labelIndex[T]) add(ns string, labels map[string]string, v T) {
	m := x[ns]
	if m == nil {
		m = map[labelPair][]labelled[T]{}
		x[ns] = m
	}
	for k, val := range labels {
		m[labelPair{k, val}] = append(m[labelPair{k, val}], labelled[T]{labels, v})
	}
}

// match returns the objects in ns whose labels include selector. An empty
// selector matches nothing, as a Service without selector selects no pods.
func (x labelIndex[T]) match(ns string, selector map[string]string) []T {
	if len(selector) == 0 {
		return nil
	}
	first := ""
	for k := range selector {
		if first == "" || k < first {
			first = k
		}
	}
	var out []T
	for _, c := range x[ns][labelPair{first, selector[first]}] {
		if Selects(selector, c.labels) {
			out = append(out, c.v)
		}
	}
	return out
}

// Selects reports whether a label selector (a Service's, a Sidecar's
// workloadSelector) matches labels: every key present with its value.
func Selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

func index(objs []*config.Object) *world {
	sorted := slices.Clone(objs)
	// Input order is whatever the watcher produced; sorting makes every
	// later tie (conflicts, equal instances) independent of it.
	slices.SortFunc(sorted, func(a, b *config.Object) int {
		if a.Kind != b.Kind {
			return strings.Compare(a.Kind, b.Kind)
		}
		if a.Group != b.Group {
			return strings.Compare(a.Group, b.Group)
		}
		if a.Namespace != b.Namespace {
			return strings.Compare(a.Namespace, b.Namespace)
		}
		return strings.Compare(a.Name, b.Name)
	})
	w := &world{
		slices:      map[nsName][]*discoveryv1.EndpointSlice{},
		pods:        map[nsName]*pod{},
		podsByLabel: labelIndex[*pod]{},
		entries:     labelIndex[*workloadEntry]{},
	}
	for _, o := range sorted {
		switch spec := o.Spec.(type) {
		case *corev1.Service:
			w.services = append(w.services, o)
		case *networking.ServiceEntry:
			if o.GroupKind == config.ServiceEntry {
				w.serviceEntries = append(w.serviceEntries, o)
			}
		case *discoveryv1.EndpointSlice:
			if svc := o.Labels[serviceNameLabel]; svc != "" {
				k := nsName{o.Namespace, svc}
				w.slices[k] = append(w.slices[k], spec)
			}
		case *corev1.Pod:
			p := &pod{ns: o.Namespace, name: o.Name, labels: o.Labels, spec: spec, proxyless: IsProxyless(o.Annotations)}
			w.pods[nsName{o.Namespace, o.Name}] = p
			w.podsByLabel.add(o.Namespace, o.Labels, p)
		case *networking.WorkloadEntry:
			// ServiceEntry.endpoints share this type but are not objects.
			if o.GroupKind == config.WorkloadEntry {
				we := &workloadEntry{ns: o.Namespace, name: o.Name, spec: spec, proxyless: IsProxyless(o.Annotations)}
				w.entries.add(o.Namespace, spec.Labels, we)
			}
		}
	}
	return w
}

func (w *world) kubeService(o *config.Object, suffix string) *Service {
	svc := o.Spec.(*corev1.Service)
	s := &Service{
		Hostname:  o.Name + "." + o.Namespace + ".svc." + suffix,
		Name:      o.Name,
		Namespace: o.Namespace,
		Labels:    o.Labels,
		ExportTo:  parseExportTo(o.Annotations[ExportToAnnotation]),
	}
	var ports []corev1.ServicePort
	for _, p := range svc.Spec.Ports {
		// The proxies carry TCP only; a UDP or SCTP port has nothing to route.
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		ports = append(ports, p)
		s.Ports = append(s.Ports, Port{Name: p.Name, Port: uint32(p.Port), Protocol: kubeProtocol(p)})
	}
	return w.fillKube(o, svc, s, ports)
}

func (w *world) fillKube(o *config.Object, svc *corev1.Service, s *Service, ports []corev1.ServicePort) *Service {
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		// The cluster DNS answers with a CNAME: the proxy resolves the
		// external name itself, as Istio does.
		s.Resolution = ResolutionDNS
		s.MeshExternal = true
		if svc.Spec.ExternalName != "" {
			for _, p := range s.Ports {
				s.addInstance(p.Port, &Instance{Address: svc.Spec.ExternalName, Port: p.Port, Namespace: o.Namespace, Ready: true})
			}
		}
		return s
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		s.Headless = true
		s.Resolution = ResolutionNone
	default:
		s.Resolution = ResolutionStatic
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 && svc.Spec.ClusterIP != "" {
			ips = []string{svc.Spec.ClusterIP}
		}
		s.Addresses = slices.Clone(ips)
	}
	selector := svc.Spec.Selector
	if sl := w.slices[nsName{o.Namespace, o.Name}]; len(sl) > 0 {
		w.sliceInstances(s, sl, ports)
	} else {
		for _, p := range w.podsByLabel.match(o.Namespace, selector) {
			for _, sp := range ports {
				if port, ok := podTargetPort(p.spec, sp.TargetPort, uint32(sp.Port), ""); ok {
					s.addPodInstance(uint32(sp.Port), p, port)
				}
			}
		}
	}
	// WorkloadEntries are outside Kubernetes' endpoint controller, so they
	// add to the EndpointSlices rather than being replaced by them.
	for _, we := range w.entries.match(o.Namespace, selector) {
		for _, sp := range ports {
			if port, ok := entryTargetPort(we.spec, sp); ok {
				s.addEntryInstance(uint32(sp.Port), we.ns, we.name, we.spec, port, we.proxyless)
			}
		}
	}
	s.sortInstances()
	return s
}

func (w *world) sliceInstances(s *Service, sl []*discoveryv1.EndpointSlice, ports []corev1.ServicePort) {
	for _, es := range sl {
		for _, sp := range ports {
			var port *int32
			for _, ep := range es.Ports {
				if ep.Port != nil && ptrString(ep.Name) == sp.Name {
					port = ep.Port
					break
				}
			}
			if port == nil {
				continue
			}
			for _, e := range es.Endpoints {
				ready := e.Conditions.Ready == nil || *e.Conditions.Ready
				var p *pod
				workload := ""
				if ref := e.TargetRef; ref != nil {
					workload = ref.Name
					if ref.Kind == "" || ref.Kind == "Pod" {
						ns := cmp.Or(ref.Namespace, s.Namespace)
						p = w.pods[nsName{ns, ref.Name}]
					}
				}
				for _, addr := range e.Addresses {
					in := &Instance{Address: addr, Port: uint32(*port), Namespace: s.Namespace, Ready: ready, Workload: workload}
					if p != nil {
						in.WorkloadName = workloadName(p.spec)
						in.Labels = p.labels
						in.ServiceAccount = podServiceAccount(p.spec)
						in.Locality = podLocality(p.labels)
					}
					s.addInstance(uint32(sp.Port), in)
				}
			}
		}
	}
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// podTargetPort resolves a target port against a pod: a number is used as
// is, a name must match one of the pod's container ports (as Kubernetes'
// endpoint controller requires; otherwise the pod is not an endpoint of
// that port), none means def. byName, when set and a container port has
// that name, wins (the Istio rule for ServiceEntry ports selecting pods).
func podTargetPort(p *corev1.Pod, target intstr.IntOrString, def uint32, byName string) (uint32, bool) {
	if byName != "" {
		if n, ok := containerPort(p, byName); ok {
			return n, true
		}
	}
	switch {
	case target.Type == intstr.Int && target.IntVal != 0:
		return uint32(target.IntVal), true
	case target.Type == intstr.String && target.StrVal != "":
		return containerPort(p, target.StrVal)
	}
	return def, true
}

func containerPort(p *corev1.Pod, name string) (uint32, bool) {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name == name && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
					return uint32(cp.ContainerPort), true
				}
			}
		}
	}
	return 0, false
}

// entryTargetPort is the port a WorkloadEntry serves a Service port on: its
// ports map keyed by the service port name overrides the target port; a
// named target port must be in that map too.
func entryTargetPort(we *networking.WorkloadEntry, sp corev1.ServicePort) (uint32, bool) {
	if n, ok := we.Ports[sp.Name]; ok && sp.Name != "" {
		return n, true
	}
	switch t := sp.TargetPort; {
	case t.Type == intstr.Int && t.IntVal != 0:
		return uint32(t.IntVal), true
	case t.Type == intstr.String && t.StrVal != "":
		n, ok := we.Ports[t.StrVal]
		return n, ok
	}
	return uint32(sp.Port), true
}

func podIP(p *corev1.Pod) string {
	if p.Status.PodIP != "" {
		return p.Status.PodIP
	}
	if len(p.Status.PodIPs) > 0 {
		return p.Status.PodIPs[0].IP
	}
	return ""
}

// podReady treats a pod as ready unless its Ready condition is False:
// pods written as files, or created by the local runner, carry no status.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionFalse {
			return false
		}
	}
	return true
}

func podServiceAccount(p *corev1.Pod) string {
	if sa := p.Spec.ServiceAccountName; sa != "" {
		return sa
	}
	// Kubernetes' admission fills this in; files skip that step.
	return "default"
}

// podLocality is istio-locality, else the topology labels (which Istio
// reads from the pod's node; Trellis has no nodes, so the pod carries
// them).
func podLocality(labels map[string]string) string {
	if l := labels[localityLabel]; l != "" {
		return strings.ReplaceAll(l, ".", "/")
	}
	r, z, s := labels["topology.kubernetes.io/region"], labels["topology.kubernetes.io/zone"], labels["topology.istio.io/subzone"]
	if r == "" && z == "" && s == "" {
		return ""
	}
	return r + "/" + z + "/" + s
}

// addPodInstance adds p as an endpoint of service port svcPort; pods that
// finished or have no IP yet are not endpoints, as in Kubernetes.
func (s *Service) addPodInstance(svcPort uint32, p *pod, port uint32) {
	ip := podIP(p.spec)
	if ip == "" || p.spec.Status.Phase == corev1.PodSucceeded || p.spec.Status.Phase == corev1.PodFailed {
		return
	}
	s.addInstance(svcPort, &Instance{
		Address:        ip,
		Port:           port,
		Labels:         p.labels,
		Namespace:      p.ns,
		ServiceAccount: podServiceAccount(p.spec),
		Locality:       podLocality(p.labels),
		Ready:          podReady(p.spec),
		Workload:       p.name,
		WorkloadName:   workloadName(p.spec),
		Proxyless:      p.proxyless,
	})
}

func (s *Service) addEntryInstance(svcPort uint32, ns, name string, we *networking.WorkloadEntry, port uint32, proxyless bool) {
	// An entry without address is reached through a network gateway,
	// which Trellis has no notion of.
	if we.Address == "" {
		return
	}
	s.addInstance(svcPort, &Instance{
		Address:        we.Address,
		Port:           port,
		Labels:         we.Labels,
		Namespace:      ns,
		ServiceAccount: we.ServiceAccount,
		Weight:         we.Weight,
		Locality:       we.Locality,
		Ready:          true,
		Workload:       name,
		WorkloadName:   name,
		Proxyless:      proxyless,
	})
}

func (s *Service) addInstance(svcPort uint32, in *Instance) {
	if s.Instances == nil {
		s.Instances = map[uint32][]*Instance{}
	}
	s.Instances[svcPort] = append(s.Instances[svcPort], in)
}

func (s *Service) sortInstances() {
	for _, ins := range s.Instances {
		sort.SliceStable(ins, func(i, j int) bool { return compareInstances(ins[i], ins[j]) < 0 })
	}
}

// compareInstances orders by address (IPs numerically, before DNS names),
// then port, then origin so that equal endpoints still sort stably.
func compareInstances(a, b *Instance) int {
	if c := compareAddresses(a.Address, b.Address); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Workload, b.Workload))
}

func compareAddresses(a, b string) int {
	if a == b {
		return 0
	}
	ia, errA := netip.ParseAddr(a)
	ib, errB := netip.ParseAddr(b)
	switch {
	case errA == nil && errB == nil:
		return ia.Compare(ib)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// parseExportTo reads the Service annotation's comma list; nil means the
// default, every namespace.
func parseExportTo(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func intOrZero(n uint32) intstr.IntOrString { return intstr.FromInt32(int32(n)) }

// workloadName is the pod's workload as istiod derives it for telemetry:
// a ReplicaSet owner names its Deployment (its name without the
// pod-template-hash suffix), a Job of a CronJob its CronJob, any other
// controller itself; a pod nothing owns is its own workload.
func workloadName(p *corev1.Pod) string {
	for _, ref := range p.OwnerReferences {
		if ref.Controller != nil && !*ref.Controller {
			continue
		}
		name := ref.Name
		switch ref.Kind {
		case "ReplicaSet":
			if h := p.Labels["pod-template-hash"]; h != "" {
				name = strings.TrimSuffix(name, "-"+h)
			}
		case "Job":
			// A CronJob's Jobs are NAME-<scheduled minutes>.
			if i := strings.LastIndexByte(name, '-'); i > 0 && allDigits(name[i+1:]) {
				name = name[:i]
			}
		}
		return name
	}
	return p.Name
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

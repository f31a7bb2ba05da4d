package analyze

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/field"
	"github.com/trellismesh/trellis/internal/registry"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/translate"
)

// clusterDomain is the suffix Kubernetes gives Service hostnames.
const clusterDomain = "svc.cluster.local"

// world indexes the objects once so that each analyzer is a plain loop.
type world struct {
	// byKind holds the objects without duplicates, in file order, so that
	// what a message names never depends on the order objects came in.
	byKind     map[config.GroupKind][]*config.Object
	keys       map[config.Key]*config.Object
	namespaces map[string]bool     // declared, or holding any object
	services   map[string]*service // by FQDN hostname
	workloads  []workload
	rootNS     string // MeshConfig's rootNamespace: policies there are mesh-wide
	// accounts holds ns/name of every service account that exists or that
	// a workload runs as (`trellis up` creates those itself).
	accounts map[string]bool
	// translated is the translator's view of the same objects, built the
	// first time an analyzer asks what the translator would serve.
	translated *translate.World
}

// translation returns the translator's World for the analysed objects,
// built once per run: the TRL0008 and TRL0009 analyzers both ask it.
// Translation breaks ties between objects by their order; the objects are
// in the store's (kind, namespace, name) order, so findings never depend
// on input order.
func (w *world) translation() *translate.World {
	if w.translated == nil {
		var objs []*config.Object
		for _, list := range w.byKind {
			objs = append(objs, list...)
		}
		sort.Slice(objs, func(i, j int) bool { return objs[i].ID() < objs[j].ID() })
		w.translated = translate.NewWorld(&store.Snapshot{Objects: objs})
	}
	return w.translated
}

// service is a Kubernetes Service or one ServiceEntry host: what a
// DestinationRule host or a route destination can resolve to.
type service struct {
	obj   *config.Object
	host  string
	ports []uint32
	// selector picks the service's workloads; nil when it has none to
	// check (a Service without selector, an external ServiceEntry).
	selector  map[string]string
	endpoints []map[string]string // inline ServiceEntry endpoints' labels
	kube      bool
}

// workload is something a sidecar runs next to: a Pod, a Deployment's pod
// template, or a WorkloadEntry.
type workload struct {
	obj     *config.Object
	labels  map[string]string
	account string
}

func (w workload) ns() string { return w.obj.Namespace }

// newWorld indexes objs. An object defined twice (same kind, namespace and
// name) is analysed once: the definition that sorts first by file wins, as
// in the store. Copies with the same content are accepted silently, as
// `kubectl apply -f DIR` accepts them; copies that differ are reported.
func newWorld(objs []*config.Object) (*world, []Message) {
	w := &world{
		byKind:     map[config.GroupKind][]*config.Object{},
		keys:       map[config.Key]*config.Object{},
		namespaces: map[string]bool{},
		services:   map[string]*service{},
		accounts:   map[string]bool{},
	}
	ordered := append([]*config.Object(nil), objs...)
	sort.SliceStable(ordered, func(i, j int) bool { return lessSource(ordered[i].Source, ordered[j].Source) })
	var msgs []Message
	for _, o := range ordered {
		if first, dup := w.keys[o.Key()]; dup {
			if !config.SameContent(first, o) {
				msgs = append(msgs, duplicateObject.msg(o, "metadata.name",
					"%s is also defined at %s; that definition is used and this one is ignored. Keep one.", o.ID(), first.Source))
			}
			continue
		}
		w.keys[o.Key()] = o
	}
	for _, o := range ordered {
		if w.keys[o.Key()] != o {
			continue
		}
		w.byKind[o.GroupKind] = append(w.byKind[o.GroupKind], o)
		if o.Namespace != "" {
			w.namespaces[o.Namespace] = true
		}
		if o.GroupKind == config.Namespace {
			w.namespaces[o.Name] = true
		}
	}
	w.rootNS = config.DefaultRootNamespace
	if o := w.keys[config.Key{GroupKind: config.ConfigMap, Namespace: config.DefaultRootNamespace, Name: config.MeshConfigMapName}]; o != nil {
		if data, ok := o.Spec.(*corev1.ConfigMap).Data[config.MeshConfigKey]; ok {
			if mc, errs := config.ParseMeshConfig(field.NewPath("data"), data); len(errs) == 0 && mc.GetRootNamespace() != "" {
				w.rootNS = mc.GetRootNamespace()
			}
		}
	}
	for _, o := range w.byKind[config.Service] {
		svc := o.Spec.(*corev1.Service)
		s := &service{obj: o, host: o.Name + "." + o.Namespace + "." + clusterDomain, selector: svc.Spec.Selector, kube: true}
		for _, p := range svc.Spec.Ports {
			s.ports = append(s.ports, uint32(p.Port))
		}
		w.services[s.host] = s
	}
	for _, o := range w.byKind[config.ServiceEntry] {
		se := o.Spec.(*networking.ServiceEntry)
		for _, h := range se.GetHosts() {
			host := w.fqdn(h, o.Namespace)
			if _, taken := w.services[host]; taken {
				continue // a Kubernetes Service of that name wins, as in Istio
			}
			s := &service{obj: o, host: host, selector: se.GetWorkloadSelector().GetLabels()}
			for _, p := range se.GetPorts() {
				s.ports = append(s.ports, p.GetNumber())
			}
			for _, e := range se.GetEndpoints() {
				s.endpoints = append(s.endpoints, e.GetLabels())
			}
			w.services[host] = s
		}
	}
	for _, o := range w.byKind[config.Pod] {
		w.addWorkload(o, o.Labels, o.Spec.(*corev1.Pod).Spec.ServiceAccountName)
	}
	for _, o := range w.byKind[config.Deployment] {
		t := o.Spec.(*appsv1.Deployment).Spec.Template
		w.addWorkload(o, t.Labels, t.Spec.ServiceAccountName)
	}
	for _, o := range w.byKind[config.WorkloadEntry] {
		we := o.Spec.(*networking.WorkloadEntry)
		w.addWorkload(o, we.GetLabels(), we.GetServiceAccount())
	}
	for _, o := range w.byKind[config.ServiceAccount] {
		w.accounts[o.Namespace+"/"+o.Name] = true
	}
	return w, msgs
}

func (w *world) addWorkload(o *config.Object, labels map[string]string, account string) {
	if account == "" {
		account = "default"
	}
	w.workloads = append(w.workloads, workload{obj: o, labels: labels, account: account})
	w.accounts[o.Namespace+"/"+account] = true
}

func lessSource(a, b config.Source) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	if a.Doc != b.Doc {
		return a.Doc < b.Doc
	}
	return a.Item < b.Item
}

// fqdn resolves a host as written in an object of namespace ns, the way
// Kubernetes DNS does for a pod there: `reviews` and `reviews.default`
// (when default is a namespace we know) and `reviews.default.svc` become
// reviews.default.svc.cluster.local; anything else is taken as written.
func (w *world) fqdn(host, ns string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if strings.Contains(h, "*") {
		return h
	}
	switch parts := strings.Split(h, "."); {
	case len(parts) == 1:
		return h + "." + ns + "." + clusterDomain
	case len(parts) == 2 && w.namespaces[parts[1]]:
		return h + "." + clusterDomain
	case len(parts) == 3 && parts[2] == "svc":
		return h + ".cluster.local"
	}
	return h
}

// kubeService finds the Kubernetes Service a name written in namespace ns
// refers to.
func (w *world) kubeService(name, ns string) *service {
	if s := w.services[w.fqdn(name, ns)]; s != nil && s.kube {
		return s
	}
	return nil
}

// workloadsIn returns the workloads of namespace ns ("" for all) whose
// labels include every label of sel.
func (w *world) workloadsIn(ns string, sel map[string]string) []workload {
	var out []workload
	for _, wl := range w.workloads {
		if (ns == "" || wl.ns() == ns) && registry.Selects(sel, wl.labels) {
			out = append(out, wl)
		}
	}
	return out
}

// labelString renders a selector as Kubernetes does: sorted k=v pairs.
func labelString(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + sel[k]
	}
	return strings.Join(keys, ",")
}

func merge(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// names lists objects as ns/name, sorted, for messages naming several.
func names(objs []*config.Object) string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.Namespace+"/"+o.Name)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func idx(p string, i int) string { return fmt.Sprintf("%s[%d]", p, i) }

package analyze

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/trellismesh/trellis/api/split"
	"github.com/trellismesh/trellis/internal/config"
)

func trafficSplitRoot(o *config.Object) string {
	return o.Spec.(*split.TrafficSplit).Spec.Service
}

// trafficSplits reports a root service that is not a Kubernetes Service of
// the split's namespace (no one can address it: an Error) and backends that
// do not exist yet (their share of traffic fails until they do: a Warning,
// since canary backends are often created after the split).
func trafficSplits(w *world) []Message {
	var msgs []Message
	for _, o := range w.byKind[config.TrafficSplit] {
		ts := o.Spec.(*split.TrafficSplit)
		if ts.Spec.Service != "" && w.kubeService(ts.Spec.Service, o.Namespace) == nil {
			msgs = append(msgs, notFound(o, "spec.service", "service", ts.Spec.Service))
		}
		for i, b := range ts.Spec.Backends {
			if b.Service != "" && w.kubeService(b.Service, o.Namespace) == nil {
				msgs = append(msgs, trafficSplitBackendAbsent.msg(o, idx("spec.backends", i)+".service",
					"backend service %q does not exist yet: its share of %s's traffic fails with 503 until a Service %s/%s does", b.Service, ts.Spec.Service, o.Namespace, b.Service))
			}
		}
	}
	return msgs
}

// route is what the analyzers need of an HTTPRoute or GRPCRoute.
type route struct {
	obj     *config.Object
	parents []gatewayv1.ParentReference
	// backends holds every backend reference with its path, mirrors included.
	backends []backendRef
}

type backendRef struct {
	ref  gatewayv1.BackendObjectReference
	path string
}

func (w *world) routes() []route {
	var out []route
	for _, o := range w.byKind[config.HTTPRoute] {
		hr := o.Spec.(*gatewayv1.HTTPRoute)
		r := route{obj: o, parents: hr.Spec.ParentRefs}
		for i, rule := range hr.Spec.Rules {
			p := idx("spec.rules", i)
			for j, b := range rule.BackendRefs {
				r.backends = append(r.backends, backendRef{b.BackendObjectReference, idx(p+".backendRefs", j)})
			}
			for j, f := range rule.Filters {
				if f.RequestMirror != nil {
					r.backends = append(r.backends, backendRef{f.RequestMirror.BackendRef, idx(p+".filters", j) + ".requestMirror.backendRef"})
				}
			}
		}
		out = append(out, r)
	}
	for _, o := range w.byKind[config.GRPCRoute] {
		gr := o.Spec.(*gatewayv1.GRPCRoute)
		r := route{obj: o, parents: gr.Spec.ParentRefs}
		for i, rule := range gr.Spec.Rules {
			p := idx("spec.rules", i)
			for j, b := range rule.BackendRefs {
				r.backends = append(r.backends, backendRef{b.BackendObjectReference, idx(p+".backendRefs", j)})
			}
			for j, f := range rule.Filters {
				if f.RequestMirror != nil {
					r.backends = append(r.backends, backendRef{f.RequestMirror.BackendRef, idx(p+".filters", j) + ".requestMirror.backendRef"})
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// isServiceRef reports whether a Gateway API reference names a core
// Service; backendRefs default to one, parentRefs do not.
func isServiceRef(group *gatewayv1.Group, kind *gatewayv1.Kind) bool {
	return (group == nil || *group == "") && kind != nil && *kind == "Service"
}

func isGatewayRef(group *gatewayv1.Group, kind *gatewayv1.Kind) bool {
	return (group == nil || *group == config.GroupGateway) && (kind == nil || *kind == "Gateway")
}

func refNamespace(ns *gatewayv1.Namespace, own string) string {
	if ns == nil || *ns == "" {
		return own
	}
	return string(*ns)
}

// refName is a reference as the user wrote it: name, or ns/name.
func refName(ns *gatewayv1.Namespace, name gatewayv1.ObjectName) string {
	if ns == nil || *ns == "" {
		return string(name)
	}
	return string(*ns) + "/" + string(name)
}

// servicePortMissing reports a Service parent whose sectionName (a port
// name, in GAMMA) or port names no port of the Service: the route then
// attaches to nothing, in silence.
func servicePortMissing(o *config.Object, svc *config.Object, p gatewayv1.ParentReference, path string) (Message, bool) {
	s, ok := svc.Spec.(*corev1.Service)
	if !ok {
		return Message{}, false
	}
	for _, sp := range s.Spec.Ports {
		if (p.SectionName == nil || string(*p.SectionName) == sp.Name) && (p.Port == nil || int32(*p.Port) == sp.Port) {
			return Message{}, false
		}
	}
	if p.SectionName == nil && p.Port == nil {
		return Message{}, false
	}
	var want []string
	if p.SectionName != nil {
		want = append(want, fmt.Sprintf("named %q", string(*p.SectionName)))
		path += ".sectionName"
	}
	if p.Port != nil {
		want = append(want, fmt.Sprintf("numbered %d", *p.Port))
		if p.SectionName == nil {
			path += ".port"
		}
	}
	return referencedResourceNotFound.msg(o, path, "Referenced service port not found: service %q has no port %s, so the route attaches to nothing",
		refName(p.Namespace, p.Name), strings.Join(want, " ")), true
}

// gatewayRoutes reports Gateway API route references to Services and
// Gateways that do not exist. Other kinds are left to validation, which
// knows what Trellis can route to.
func gatewayRoutes(w *world) []Message {
	var msgs []Message
	for _, r := range w.routes() {
		o := r.obj
		for i, p := range r.parents {
			ns := refNamespace(p.Namespace, o.Namespace)
			path := idx("spec.parentRefs", i)
			switch {
			case isServiceRef(p.Group, p.Kind):
				svc := w.keys[config.Key{GroupKind: config.Service, Namespace: ns, Name: string(p.Name)}]
				if svc == nil {
					msgs = append(msgs, notFound(o, path, "service", refName(p.Namespace, p.Name)))
					continue
				}
				if m, ok := servicePortMissing(o, svc, p, path); ok {
					msgs = append(msgs, m)
				}
			case isGatewayRef(p.Group, p.Kind):
				if w.keys[config.Key{GroupKind: config.GatewayAPIGate, Namespace: ns, Name: string(p.Name)}] == nil {
					msgs = append(msgs, notFound(o, path, "gateway", refName(p.Namespace, p.Name)))
				}
			}
		}
		for _, b := range r.backends {
			if b.ref.Kind == nil {
				kind := gatewayv1.Kind("Service")
				b.ref.Kind = &kind
			}
			if !isServiceRef(b.ref.Group, b.ref.Kind) {
				continue
			}
			ns := refNamespace(b.ref.Namespace, o.Namespace)
			if w.keys[config.Key{GroupKind: config.Service, Namespace: ns, Name: string(b.ref.Name)}] == nil {
				msgs = append(msgs, notFound(o, b.path, "service", refName(b.ref.Namespace, b.ref.Name)))
			}
		}
	}
	return msgs
}

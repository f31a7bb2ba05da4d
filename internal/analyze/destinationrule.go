package analyze

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// destinationRules reports DestinationRules for hosts no service has,
// subsets that select no workload of the host, and one subset name defined
// by several DestinationRules of one host (Istio merges them and keeps
// the first, so the other definition is silently dropped).
func destinationRules(w *world) []Message {
	var msgs []Message
	type defined struct {
		o    *config.Object
		path string
	}
	subsets := map[string][]defined{} // host|workloadSelector|subset
	var order []string
	for _, o := range w.byKind[config.DestinationRule] {
		dr := o.Spec.(*networking.DestinationRule)
		host := w.fqdn(dr.GetHost(), o.Namespace)
		for i, s := range dr.GetSubsets() {
			key := host + "|" + labelString(dr.GetWorkloadSelector().GetMatchLabels()) + "|" + s.GetName()
			if len(subsets[key]) == 0 {
				order = append(order, key)
			}
			subsets[key] = append(subsets[key], defined{o, idx("spec.subsets", i) + ".name"})
		}
		if strings.Contains(host, "*") {
			continue // wildcard hosts cover services that need not exist yet
		}
		svc := w.services[host]
		if svc == nil {
			msgs = append(msgs, unknownDestinationRuleHost.msg(o, "spec.host",
				"The host %s defined in the DestinationRule does not match any services in the mesh.", dr.GetHost()))
			continue
		}
		for i, s := range dr.GetSubsets() {
			if !svc.subsetSelects(w, s.GetLabels()) {
				msgs = append(msgs, destinationRuleSubsetNotSelectPod.msg(o, idx("spec.subsets", i)+".labels",
					"The Subset %s defined in the DestinationRule does not select any workload of %s, which may lead to 503 UH (NoHealthyUpstream).",
					s.GetName(), host))
			}
		}
	}
	for _, key := range order {
		ds := subsets[key]
		objs := make([]*config.Object, 0, len(ds))
		for _, d := range ds {
			if len(objs) == 0 || objs[len(objs)-1] != d.o {
				objs = append(objs, d.o)
			}
		}
		if len(objs) < 2 {
			continue // a name repeated inside one rule is the validator's to report
		}
		parts := strings.SplitN(key, "|", 3)
		for _, d := range ds {
			msgs = append(msgs, conflictingSubsets.msg(d.o, d.path,
				"subset %q of host %s is defined by several DestinationRules (%s): only one definition is used; define each subset once",
				parts[2], parts[0], names(objs)))
		}
	}
	return msgs
}

// subsetSelects reports whether a subset with these labels can have an
// endpoint. Services whose workloads cannot be known (no selector, an
// external ServiceEntry) select anything.
func (s *service) subsetSelects(w *world, labels map[string]string) bool {
	if len(s.selector) > 0 {
		return len(w.workloadsIn(s.obj.Namespace, merge(s.selector, labels))) > 0
	}
	if len(s.endpoints) > 0 {
		for _, e := range s.endpoints {
			if registry.Selects(labels, e) {
				return true
			}
		}
		return false
	}
	return true
}

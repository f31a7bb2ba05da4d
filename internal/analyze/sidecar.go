package analyze

import (
	"sort"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
)

// sidecars reports, per namespace, Sidecars whose selector matches no
// workload, workloads selected by more than one Sidecar, and more than one
// Sidecar without selector: a proxy takes exactly one Sidecar, and which
// one would be arbitrary.
func sidecars(w *world) []Message {
	var msgs []Message
	selectorless := map[string][]*config.Object{}
	var nsOrder []string
	selectedBy := map[*config.Object][]*config.Object{} // workload object -> Sidecars
	var wlOrder []workload
	for _, o := range w.byKind[config.Sidecar] {
		sel := o.Spec.(*networking.Sidecar).GetWorkloadSelector().GetLabels()
		if len(sel) == 0 {
			if len(selectorless[o.Namespace]) == 0 {
				nsOrder = append(nsOrder, o.Namespace)
			}
			selectorless[o.Namespace] = append(selectorless[o.Namespace], o)
			continue
		}
		wls := w.workloadsIn(o.Namespace, sel)
		if len(wls) == 0 {
			msgs = append(msgs, notFound(o, "spec.workloadSelector.labels", "selector", labelString(sel)))
		}
		for _, wl := range wls {
			if len(selectedBy[wl.obj]) == 0 {
				wlOrder = append(wlOrder, wl)
			}
			selectedBy[wl.obj] = append(selectedBy[wl.obj], o)
		}
	}
	sort.Strings(nsOrder)
	for _, ns := range nsOrder {
		if scs := selectorless[ns]; len(scs) > 1 {
			for _, o := range scs {
				msgs = append(msgs, multipleSidecarsWithoutSelector.msg(o, "",
					"The Sidecars %s in namespace %q have no workload selector, which can lead to undefined behavior.", names(scs), ns))
			}
		}
	}
	reported := map[*config.Object]bool{}
	for _, wl := range wlOrder {
		scs := selectedBy[wl.obj]
		if len(scs) < 2 {
			continue
		}
		for _, o := range scs {
			// One message per Sidecar is enough to find the overlap.
			if reported[o] {
				continue
			}
			reported[o] = true
			msgs = append(msgs, conflictingSidecarSelectors.msg(o, "spec.workloadSelector.labels",
				"The Sidecars %s in namespace %q select the same workload %s, which can lead to undefined behavior.", names(scs), wl.ns(), wl.obj.ID()))
		}
	}
	return msgs
}

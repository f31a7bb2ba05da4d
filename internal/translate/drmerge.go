package translate

import (
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
)

// mergeDestinationRules merges the DestinationRules of one namespace that
// name one host (with the same workload selector, or none) into one, as
// Istio documents: subsets are appended (a name already defined keeps its
// first definition, which the analyzer reports as TRL0003), the first rule
// with a top-level trafficPolicy gives it, and exportTo is the union.
// Istio orders the rules by creation time; files carry none, so the order
// is the snapshot's (namespace, then name). Without this, every rule but
// one was ignored for the host and its subsets had no clusters.
func mergeDestinationRules(objs []*config.Object, fqdn func(host, ns string) string) []*config.Object {
	type key struct{ ns, host, selector string }
	groups := map[key][]*config.Object{}
	var order []key
	for _, o := range objs {
		dr := o.Spec.(*networking.DestinationRule)
		k := key{o.Namespace, fqdn(dr.GetHost(), o.Namespace), selectorKey(dr.GetWorkloadSelector().GetMatchLabels())}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], o)
	}
	if len(order) == len(objs) {
		return objs
	}
	out := make([]*config.Object, 0, len(order))
	for _, k := range order {
		g := groups[k]
		if len(g) == 1 {
			out = append(out, g[0])
			continue
		}
		merged := proto.Clone(g[0].Spec.(*networking.DestinationRule)).(*networking.DestinationRule)
		names := map[string]bool{}
		for _, s := range merged.GetSubsets() {
			names[s.GetName()] = true
		}
		exportAll := len(merged.GetExportTo()) == 0
		for _, o := range g[1:] {
			dr := o.Spec.(*networking.DestinationRule)
			for _, s := range dr.GetSubsets() {
				if !names[s.GetName()] {
					names[s.GetName()] = true
					merged.Subsets = append(merged.Subsets, s)
				}
			}
			if merged.GetTrafficPolicy() == nil && dr.GetTrafficPolicy() != nil {
				merged.TrafficPolicy = dr.GetTrafficPolicy()
			}
			exportAll = exportAll || len(dr.GetExportTo()) == 0
			for _, e := range dr.GetExportTo() {
				if !slices.Contains(merged.ExportTo, e) {
					merged.ExportTo = append(merged.ExportTo, e)
				}
			}
		}
		if exportAll {
			merged.ExportTo = nil
		}
		first := *g[0]
		first.Spec = merged
		out = append(out, &first)
	}
	return out
}

func selectorKey(sel map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		b.WriteString(k + "=" + sel[k] + ",")
	}
	return b.String()
}

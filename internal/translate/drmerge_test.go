package translate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
)

// Istio's DestinationRule reference: rules for one host in one namespace
// are merged; a subset defined twice keeps its first definition, the first
// top-level trafficPolicy wins, rules with different workload selectors stay
// apart, and a rule exported everywhere makes the merge exported everywhere.
func TestMergeDestinationRules(t *testing.T) {
	f := config.ParseFile("dr.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: shop}
spec:
  host: reviews
  exportTo: ["."]
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  exportTo: ["."]
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets: [{name: v1, labels: {version: other}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: c, namespace: shop}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets: [{name: v3, labels: {version: v3}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: shop}
spec:
  host: reviews
  workloadSelector: {matchLabels: {app: client}}
  subsets: [{name: v4, labels: {version: v4}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: e, namespace: other}
spec:
  host: reviews.shop.svc.cluster.local
  subsets: [{name: v5, labels: {version: v5}}]
`))
	if len(f.Errors) > 0 {
		t.Fatal(f.Errors)
	}
	fqdn := func(host, ns string) string {
		if host == "reviews" {
			return "reviews." + ns + ".svc.cluster.local"
		}
		return host
	}
	got := mergeDestinationRules(f.Objects, fqdn)
	type rule struct {
		Name, Namespace string
		Subsets         []string
		LB              string
		ExportTo        []string
	}
	var out []rule
	for _, o := range got {
		dr := o.Spec.(*networking.DestinationRule)
		r := rule{Name: o.Name, Namespace: o.Namespace, LB: dr.GetTrafficPolicy().GetLoadBalancer().GetSimple().String(), ExportTo: dr.GetExportTo()}
		for _, s := range dr.GetSubsets() {
			r.Subsets = append(r.Subsets, s.GetName()+"="+s.GetLabels()["version"])
		}
		out = append(out, r)
	}
	want := []rule{
		{Name: "a", Namespace: "shop", Subsets: []string{"v1=v1", "v2=v2", "v3=v3"}, LB: "ROUND_ROBIN"},
		{Name: "d", Namespace: "shop", Subsets: []string{"v4=v4"}, LB: "UNSPECIFIED"},
		{Name: "e", Namespace: "other", Subsets: []string{"v5=v5"}, LB: "UNSPECIFIED"},
	}
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("merged rules (-want +got):\n%s", d)
	}
	// The user's objects are not changed by the merge.
	if n := len(f.Objects[0].Spec.(*networking.DestinationRule).GetSubsets()); n != 1 {
		t.Errorf("the first rule's own spec now has %d subsets, want 1", n)
	}
}

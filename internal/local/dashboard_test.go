package local

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
)

// The dashboard's policies column lists, per workload, the
// PeerAuthentication Istio picks for it (with its mode), the security
// policies selecting it and the traffic rules for its Services.
func TestPoliciesInForce(t *testing.T) {
	st := store.New(nil)
	f := config.ParseFile("p.yaml", []byte(`
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: legacy, namespace: shop}
spec:
  selector: {matchLabels: {app: legacy}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{port: 80}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other, namespace: shop}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings}}]}]
`))
	if len(f.Errors) > 0 {
		t.Fatal(f.Errors)
	}
	st.ApplyFile(f)
	snap := st.Snapshot()
	for _, tc := range []struct {
		ns     string
		labels map[string]string
		want   []string
	}{
		{"shop", map[string]string{"app": "reviews", "version": "v1"}, []string{
			"AuthorizationPolicy shop/reviews-viewer",
			"DestinationRule shop/reviews",
			"PeerAuthentication istio-system/default (STRICT)",
			"VirtualService shop/reviews",
		}},
		// The workload's policy wins; its unset mode inherits the mesh's.
		{"shop", map[string]string{"app": "legacy"}, []string{"PeerAuthentication shop/legacy (STRICT)"}},
		{"other", map[string]string{"app": "reviews"}, []string{"PeerAuthentication istio-system/default (STRICT)"}},
	} {
		if diff := cmp.Diff(tc.want, PoliciesInForce(snap, tc.ns, tc.labels)); diff != "" {
			t.Errorf("%s %v (-want +got):\n%s", tc.ns, tc.labels, diff)
		}
	}
}

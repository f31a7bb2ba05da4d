package local

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/store"
)

// Which unenforced security policies `trellis status` names next to a
// pod follows Istio's scoping: root namespace for all, a namespace for its
// own, selectors and Service targetRefs narrowing. Policies whose every
// field is enforced are not named: PeerAuthentication (every mode is
// enforced by the sidecars' mTLS) among them.
func TestUnenforcedPolicies(t *testing.T) {
	st := store.New(nil)
	f := config.ParseFile("p.yaml", []byte(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec: {rules: [{when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: [payment]}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payment-policy, namespace: shop}
spec:
  selector: {matchLabels: {app: payment}}
  action: ALLOW
  rules: [{when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: [payment]}]}]
---
# Enforced: never named.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: enforced, namespace: shop}
spec:
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  jwtRules: [{issuer: me}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{port: 80}]
---
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
  mtls: {mode: PERMISSIVE}
`))
	if len(f.Errors) > 0 {
		t.Fatal(f.Errors)
	}
	st.ApplyFile(f)
	policies := newSecurityPolicies(st.Snapshot())
	cases := []struct {
		ns     string
		labels map[string]string
		want   []string
	}{
		{"shop", map[string]string{"app": "payment"}, []string{"AuthorizationPolicy istio-system/mesh-wide", "AuthorizationPolicy shop/payment-policy"}},
		{"shop", map[string]string{"app": "reviews"}, []string{"AuthorizationPolicy istio-system/mesh-wide", "RequestAuthentication shop/jwt"}},
		{"shop", map[string]string{"app": "legacy"}, []string{"AuthorizationPolicy istio-system/mesh-wide"}},
		{"other", map[string]string{"app": "payment"}, []string{"AuthorizationPolicy istio-system/mesh-wide"}},
	}
	for _, tc := range cases {
		if diff := cmp.Diff(tc.want, policies.unenforced(tc.ns, tc.labels)); diff != "" {
			t.Errorf("%s %v (-want +got):\n%s", tc.ns, tc.labels, diff)
		}
	}
}

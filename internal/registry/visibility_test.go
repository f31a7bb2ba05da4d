package registry

import (
	"testing"

	"github.com/trellismesh/trellis/internal/config"
)

const exportWorld = `
apiVersion: v1
kind: Service
metadata: {name: public, namespace: a}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: a
  annotations: {networking.istio.io/exportTo: "."}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: named
  namespace: a
  annotations: {networking.istio.io/exportTo: "b,c"}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se-public, namespace: a}
spec:
  hosts: [public.example.com]
  exportTo: ["*"]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se-private, namespace: a}
spec:
  hosts: [private.example.com]
  exportTo: ["."]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se-named, namespace: a}
spec:
  hosts: [named.example.com]
  exportTo: [".", b]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se-hidden, namespace: a}
spec:
  hosts: [hidden.example.com]
  exportTo: ["~"]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
`

func TestVisible(t *testing.T) {
	r := build(t, exportWorld)
	tests := []struct {
		host    string
		visible map[string]bool // namespace -> visible
	}{
		{"public.a.svc.cluster.local", map[string]bool{"a": true, "b": true, "c": true}},
		{"private.a.svc.cluster.local", map[string]bool{"a": true, "b": false, "c": false}},
		// Naming namespaces does not include the service's own.
		{"named.a.svc.cluster.local", map[string]bool{"a": false, "b": true, "c": true}},
		{"public.example.com", map[string]bool{"a": true, "b": true, "c": true}},
		{"private.example.com", map[string]bool{"a": true, "b": false, "c": false}},
		{"named.example.com", map[string]bool{"a": true, "b": true, "c": false}},
		{"hidden.example.com", map[string]bool{"a": false, "b": false, "c": false}},
	}
	for _, tt := range tests {
		s := mustLookup(t, r, tt.host, "x")
		for ns, want := range tt.visible {
			if got := r.Visible(s, ns); got != want {
				t.Errorf("Visible(%s, %s) = %v, want %v (exportTo %q)", tt.host, ns, got, want, s.ExportTo)
			}
		}
	}
	if s := mustLookup(t, r, "named.a", "x"); !equalStrings(s.ExportTo, []string{"b", "c"}) {
		t.Errorf("annotation parsed as %q", s.ExportTo)
	}
	diff(t, []string{
		"named.a.svc.cluster.local", "named.example.com", "public.a.svc.cluster.local",
		"public.example.com",
	}, hostnames(r.ForProxy("b", nil)))
}

// Validation rejects "~" on a Service and "*" or "~" with other entries,
// but the Kubernetes source may still deliver them; Visible reads them as
// Istio does.
func TestVisibleUnvalidated(t *testing.T) {
	r := Build(nil, "")
	diff(t, []string{".", "c"}, parseExportTo(" . , c ,"))
	diff(t, []string(nil), parseExportTo(""))
	tests := []struct {
		exportTo []string
		visible  map[string]bool
	}{
		{nil, map[string]bool{"a": true, "b": true}},
		{[]string{"~"}, map[string]bool{"a": false, "b": false}},
		{[]string{"~", "*"}, map[string]bool{"a": true, "b": true}},
		{[]string{"~", "a", "."}, map[string]bool{"a": false, "b": false}},
		{[]string{".", "*"}, map[string]bool{"a": true, "b": true}},
		{[]string{"b"}, map[string]bool{"a": false, "b": true}},
	}
	for _, tt := range tests {
		s := &Service{Hostname: "s.a.svc.cluster.local", Namespace: "a", ExportTo: tt.exportTo}
		for ns, want := range tt.visible {
			if got := r.Visible(s, ns); got != want {
				t.Errorf("exportTo %q: Visible(%s) = %v, want %v", tt.exportTo, ns, got, want)
			}
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const sidecarWorld = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: mesh-default, namespace: istio-system}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: root-selected, namespace: istio-system}
spec:
  workloadSelector:
    labels: {app: web}
  egress:
  - hosts: ["*/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: shop-default, namespace: shop}
spec:
  egress:
  - port: {number: 443, protocol: TLS, name: tls}
    hosts: ["*/*.example.com"]
  - hosts: ["./*", "data/db.data.svc.cluster.local"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web, namespace: shop}
spec:
  workloadSelector:
    labels: {app: web}
  egress:
  - hosts: ["~/*", "shop/web.shop.svc.cluster.local"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: open, namespace: open}
spec:
  workloadSelector:
    labels: {app: open}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec:
  ports: [{name: tcp, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: data}
spec:
  ports: [{name: tcp, port: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: istiod, namespace: istio-system}
spec:
  ports: [{name: grpc, port: 15012}]
---
apiVersion: v1
kind: Service
metadata: {name: lonely, namespace: open}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: data}
spec:
  hosts: [api.example.com, "*.cdn.example.com", example.com]
  resolution: NONE
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private-ext, namespace: data}
spec:
  hosts: [secret.example.com]
  exportTo: ["."]
  resolution: NONE
  ports: [{number: 443, name: tls, protocol: TLS}]
`

func TestSidecarFor(t *testing.T) {
	objs := parse(t, sidecarWorld)
	name := func(o *config.Object) string {
		if o == nil {
			return "<nil>"
		}
		return o.Namespace + "/" + o.Name
	}
	tests := []struct {
		ns     string
		labels map[string]string
		want   string
	}{
		{"shop", map[string]string{"app": "web", "version": "v1"}, "shop/web"},
		{"shop", map[string]string{"app": "cart"}, "shop/shop-default"},
		{"shop", nil, "shop/shop-default"},
		// The root namespace's selector Sidecar only applies in the root
		// namespace itself.
		{"data", map[string]string{"app": "web"}, "istio-system/mesh-default"},
		{"istio-system", map[string]string{"app": "web"}, "istio-system/root-selected"},
		{"istio-system", map[string]string{"app": "istiod"}, "istio-system/mesh-default"},
		{"open", map[string]string{"app": "open"}, "open/open"},
		{"open", map[string]string{"app": "other"}, "istio-system/mesh-default"},
	}
	for _, tt := range tests {
		if got := name(SidecarFor(objs, tt.ns, tt.labels, "istio-system")); got != tt.want {
			t.Errorf("SidecarFor(%s, %v) = %s, want %s", tt.ns, tt.labels, got, tt.want)
		}
	}
	if got := SidecarFor(objs, "data", nil, "nowhere"); got != nil {
		t.Errorf("without a root Sidecar: got %s, want nil", name(got))
	}
}

func TestForProxy(t *testing.T) {
	objs := parse(t, sidecarWorld)
	r := Build(objs, "cluster.local")
	forProxy := func(ns string, labels map[string]string) []string {
		return hostnames(r.ForProxy(ns, SidecarFor(objs, ns, labels, "istio-system")))
	}
	diff(t, []string{
		"*.cdn.example.com", "api.example.com",
		"cart.shop.svc.cluster.local", "db.data.svc.cluster.local", "web.shop.svc.cluster.local",
	}, forProxy("shop", map[string]string{"app": "cart"}))
	// "~/*" imports nothing; the explicit host still does.
	diff(t, []string{"web.shop.svc.cluster.local"}, forProxy("shop", map[string]string{"app": "web"}))
	// The root default's "./*" means the proxy's namespace; exportTo "."
	// still applies on top of the Sidecar.
	diff(t, []string{
		"*.cdn.example.com", "api.example.com", "cache.data.svc.cluster.local", "db.data.svc.cluster.local",
		"example.com", "istiod.istio-system.svc.cluster.local", "secret.example.com",
	}, forProxy("data", nil))
	// A Sidecar without egress imports everything visible.
	all := hostnames(r.ForProxy("open", nil))
	diff(t, all, forProxy("open", map[string]string{"app": "open"}))
	if len(all) != 9 { // every service but the private ServiceEntry
		t.Errorf("ForProxy(open, nil) = %v", all)
	}
}

package registry

import (
	"fmt"
	"testing"
)

const egressPortWorld = `
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  ports: [{name: http, port: 9080}, {name: tcp-admin, port: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec:
  ports: [{name: tcp, port: 5432}, {name: tcp-dns, port: 53}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: data}
spec:
  hosts: [ext.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: only-9080, namespace: shop}
spec:
  workloadSelector: {labels: {app: only-9080}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.shop.svc.cluster.local"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: port-and-catch-all, namespace: shop}
spec:
  workloadSelector: {labels: {app: port-and-catch-all}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.shop.svc.cluster.local"]
  - hosts: ["./*", "data/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: protocols, namespace: shop}
spec:
  workloadSelector: {labels: {app: protocols}}
  egress:
  - port: {number: 9090, protocol: TCP, name: tcp}
    hosts: ["./*"]
  - port: {number: 5432}
    hosts: ["data/*"]
  - port: {number: 443, protocol: TLS, name: tls}
    hosts: ["*/*.example.com"]
  - port: {number: 53, protocol: UDP, name: dns}
    hosts: ["*/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: proxy-and-socket, namespace: shop}
spec:
  workloadSelector: {labels: {app: proxy-and-socket}}
  egress:
  - port: {number: 15080, protocol: HTTP_PROXY, name: proxy}
    hosts: ["data/ext.example.com"]
  - port: {number: 0, protocol: HTTP, name: uds}
    bind: unix:///var/run/app.sock
    hosts: ["./*"]
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./ratings.shop.svc.cluster.local"]
`

// imported lists "host:port listener-protocol" for what a proxy reaches.
func imported(e Egress) []string {
	var out []string
	for _, s := range e.Services() {
		n := 0
		for _, p := range s.Ports {
			if proto, ok := e.Port(s, p); ok {
				out = append(out, fmt.Sprintf("%s:%d %s", s.Hostname, p.Port, proto))
				n++
			}
		}
		if n == 0 {
			out = append(out, s.Hostname+" listed without a port")
		}
	}
	return out
}

// An egress listener with a port imports its hosts on that port only, and
// decides that port alone; the listener without a port imports its hosts
// on every other port; the egress port's protocol is the listener's.
func TestEgressPort(t *testing.T) {
	objs := parse(t, egressPortWorld)
	r := Build(objs, "cluster.local")
	imports := func(app string) []string {
		t.Helper()
		sc := SidecarFor(objs, "shop", map[string]string{"app": app}, "istio-system")
		if sc == nil || sc.Name != app {
			t.Fatalf("Sidecar for %s: %v", app, sc)
		}
		return imported(r.Egress("shop", sc))
	}
	const (
		reviews = "reviews.shop.svc.cluster.local"
		ratings = "ratings.shop.svc.cluster.local"
		db      = "db.data.svc.cluster.local"
	)
	tests := []struct {
		app  string
		want []string
	}{
		// Only 9080, and only reviews on it.
		{"only-9080", []string{reviews + ":9080 HTTP"}},
		// 9080 is the port listener's: ratings is not on it, though the
		// catch-all lists ./*; every other port comes from the catch-all,
		// with the service's own protocol.
		{"port-and-catch-all", []string{
			db + ":5432 TCP", db + ":53 TCP",
			"ext.example.com:443 TLS", "ext.example.com:80 HTTP",
			ratings + ":9090 TCP",
			reviews + ":9080 HTTP", reviews + ":9090 HTTP",
		}},
		// The egress port's protocol is the listener's (none: sniffed, as
		// Istio's); UDP imports nothing, and no catch-all means no other
		// port.
		{"protocols", []string{
			db + ":5432 UnsupportedProtocol",
			"ext.example.com:443 TLS",
			ratings + ":9090 TCP",
			reviews + ":9090 TCP",
		}},
		// HTTP_PROXY matches no port: its hosts are imported on every
		// port, as Istio's forward-proxy listener does. The unix socket
		// listener imports nothing over IP.
		{"proxy-and-socket", []string{
			"ext.example.com:443 TLS", "ext.example.com:80 HTTP",
			ratings + ":9080 HTTP",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			diff(t, tt.want, imports(tt.app))
		})
	}

	// ForProxy lists the services reached on at least one port.
	sc := SidecarFor(objs, "shop", map[string]string{"app": "only-9080"}, "istio-system")
	diff(t, []string{reviews}, hostnames(r.ForProxy("shop", sc)))
	// Without a Sidecar, or one without egress, every port is imported
	// with its own protocol.
	all := imported(r.Egress("shop", nil))
	if len(all) != 8 {
		t.Errorf("Egress(shop, nil) = %v, want all 8 ports", all)
	}
}

// A port listener's hosts still go through exportTo and the namespace
// rules: it narrows, never widens.
func TestEgressPortExportTo(t *testing.T) {
	objs := parse(t, `
apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: data
  annotations: {networking.istio.io/exportTo: "."}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: public, namespace: data}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["*/*", "~/public.data.svc.cluster.local"]
`)
	r := Build(objs, "cluster.local")
	sc := SidecarFor(objs, "shop", nil, "istio-system")
	diff(t, []string{"public.data.svc.cluster.local:9080 HTTP"}, imported(r.Egress("shop", sc)))
}

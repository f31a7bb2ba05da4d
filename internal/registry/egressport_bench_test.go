package registry

import "testing"

// egressPortSidecar narrows big's services: port 80 to svc-1 only, every
// other port from the catch-all.
const egressPortSidecar = `
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: big}
spec:
  egress:
  - port: {number: 80, protocol: HTTP, name: http}
    hosts: ["./svc-1.big.svc.cluster.local"]
  - hosts: ["./*"]
`

// BenchmarkEgress is what a scope's translation pays to learn what its
// proxies reach: the services, then each of their ports.
// BenchmarkForProxy is the services alone (all there was before per-port
// imports).
func BenchmarkEgress(b *testing.B) {
	objs := parse(b, bigWorld(1000, 1)+egressPortSidecar)
	r := Build(objs, "cluster.local")
	sc := SidecarFor(objs, "big", nil, "istio-system")
	if sc == nil {
		b.Fatal("no Sidecar")
	}
	for _, bc := range []struct {
		name    string
		sidecar bool
		ports   int
	}{{"no-sidecar", false, 2000}, {"sidecar", true, 1001}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var e Egress
				if bc.sidecar {
					e = r.Egress("big", sc)
				} else {
					e = r.Egress("big", nil)
				}
				n := 0
				for _, s := range e.Services() {
					for _, p := range s.Ports {
						if _, ok := e.Port(s, p); ok {
							n++
						}
					}
				}
				if n != bc.ports {
					b.Fatalf("%d ports, want %d", n, bc.ports)
				}
			}
		})
	}
}

func BenchmarkForProxy(b *testing.B) {
	objs := parse(b, bigWorld(1000, 1)+egressPortSidecar)
	r := Build(objs, "cluster.local")
	sc := SidecarFor(objs, "big", nil, "istio-system")
	if sc == nil {
		b.Fatal("no Sidecar")
	}
	b.Run("no-sidecar", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n := len(r.ForProxy("big", nil)); n != 1000 {
				b.Fatalf("%d services", n)
			}
		}
	})
	b.Run("sidecar", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n := len(r.ForProxy("big", sc)); n != 1000 {
				b.Fatalf("%d services", n)
			}
		}
	})
}

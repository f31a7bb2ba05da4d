package local

import (
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
)

// serviceNet is where transparent mode's Service VIPs come from, as a
// cluster's service CIDR; the addresses exist only inside the mesh's
// namespaces, where the sidecars capture them.
var serviceNet = netip.MustParsePrefix("10.96.0.0/16")

// vips gives each Service a cluster IP, as the API server does, and keeps
// it for the Service's life in this mesh, across edits of its file.
type vips struct {
	mu    sync.Mutex
	byKey map[string]netip.Addr
	used  map[netip.Addr]bool
	next  netip.Addr
}

func newVIPs() *vips {
	// .0.1 is the API server's in a cluster; start after the first few,
	// as kube-dns's 10.96.0.10 does.
	return &vips{byKey: map[string]netip.Addr{}, used: map[netip.Addr]bool{}, next: netip.MustParseAddr("10.96.0.11")}
}

// transform fills in spec.clusterIP(s) of every ClusterIP Service in f
// that has none. Headless and ExternalName Services are left alone;
// addresses the user wrote are kept.
func (v *vips) transform(f *config.File) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, o := range f.Objects {
		svc, ok := o.Spec.(*corev1.Service)
		if !ok || o.GroupKind != config.Service {
			continue
		}
		if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		if svc.Spec.ClusterIP != "" {
			if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
				v.used[a] = true
			}
			continue
		}
		k := o.Namespace + "/" + o.Name
		ip, ok := v.byKey[k]
		if !ok {
			ip = v.allocLocked()
			if !ip.IsValid() {
				continue // 65k Services: leave it without a VIP
			}
			v.byKey[k] = ip
		}
		svc.Spec.ClusterIP = ip.String()
		svc.Spec.ClusterIPs = []string{ip.String()}
	}
}

func (v *vips) allocLocked() netip.Addr {
	for range 1 << 16 {
		ip := v.next
		v.next = v.next.Next()
		if !serviceNet.Contains(v.next) {
			v.next = serviceNet.Addr().Next()
		}
		if !v.used[ip] && serviceNet.Contains(ip) {
			v.used[ip] = true
			return ip
		}
	}
	return netip.Addr{}
}

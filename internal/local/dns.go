package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/local/meshdns"
	"github.com/trellismesh/trellis/internal/registry"
)

// startDNS serves the mesh's names on the pods' gateway, inside the node
// namespace, as a cluster's kube-dns does; every pod's resolv.conf points
// there.
func (m *Mesh) startDNS() error {
	addr := netip.AddrPortFrom(m.net.gateway, 53).String()
	var (
		pc  net.PacketConn
		lis net.Listener
	)
	err := inNetns(m.net.nodePath, func() error {
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return err
		}
		if lis, err = net.Listen("tcp", addr); err != nil {
			pc.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot serve the mesh's DNS on %s: %w", addr, err)
	}
	m.dns = meshdns.New("cluster.local", m.log)
	m.updateDNS()
	ctx, cancel := context.WithCancel(context.Background())
	m.stopDNS = cancel
	m.dnsDone = make(chan struct{})
	go func() {
		defer close(m.dnsDone)
		if err := m.dns.Serve(ctx, pc, lis); err != nil {
			m.console.printf("mesh DNS stopped: %v", err)
		}
	}()
	return nil
}

// updateDNS gives the DNS server the Services as they are now: their
// VIPs, or for headless ones their ready pods.
func (m *Mesh) updateDNS() {
	if m.dns == nil {
		return
	}
	snap := m.cp.Store.Snapshot()
	var svcs []meshdns.Service
	for _, o := range snap.OfKind(config.Service) {
		svc, ok := o.Spec.(*corev1.Service)
		if !ok {
			continue
		}
		s := meshdns.Service{Namespace: o.Namespace, Name: o.Name, Headless: svc.Spec.ClusterIP == corev1.ClusterIPNone}
		if s.Headless {
			m.mu.Lock()
			for _, p := range m.pods {
				if p.w.Namespace == o.Namespace && len(svc.Spec.Selector) > 0 && registry.Selects(svc.Spec.Selector, p.w.Pod.Labels) && p.ready() {
					s.PodIPs = append(s.PodIPs, p.ip)
				}
			}
			m.mu.Unlock()
		} else {
			for _, ip := range svc.Spec.ClusterIPs {
				if a, err := netip.ParseAddr(ip); err == nil {
					s.VIPs = append(s.VIPs, a)
				}
			}
		}
		svcs = append(svcs, s)
	}
	m.dns.SetServices(svcs)
}

// updateServices gives the node namespace's Service rules the VIPs and
// ready endpoints as they are now (see serviceTable).
func (m *Mesh) updateServices() {
	if m.net == nil {
		return
	}
	reg := registry.Build(m.cp.Store.Snapshot().Objects, "cluster.local")
	if err := m.net.applyServiceRules(vipRules(reg.Services())); err != nil {
		m.console.printf("cannot update the Service rules: %v", err)
	}
}

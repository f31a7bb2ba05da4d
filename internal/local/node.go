package local

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/local/meshdns"
	"github.com/trellismesh/trellis/internal/registry"
	"github.com/trellismesh/trellis/internal/store"
)

// explicitPodNet is where explicit-mode pods get their IPs.
var explicitPodNet = netip.MustParsePrefix("127.10.0.0/16")

// nodeNetwork is the mesh's node: what a node's CNI, kube-proxy and
// kube-dns would provide. It hands out pod IPs in both modes; in
// transparent mode it also owns the network namespaces (netns_linux.go),
// the Service VIPs (vip.go), the node namespace's Service rules
// (kubeproxy_linux.go) and the mesh's DNS server, and is how a pod's
// processes and probes get into its namespace.
//
// The supervisor calls addPod and removePod; the mesh's loop calls
// updateDNS and updateServices after config changes. Each piece has its
// own lock (ipam, vips) or is set only at start (net, dns).
type nodeNetwork struct {
	log      *slog.Logger
	console  *console
	stateDir string
	ipam     *ipam

	// Transparent mode only (nil in explicit mode).
	net  *podNetwork
	vips *vips
	// trellisPath is the binary that enters a pod's namespaces (EnterMain).
	trellisPath string
	// dial is how probes reach pods: from the node namespace, as a
	// kubelet would.
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	dns     *meshdns.Server
	stopDNS context.CancelFunc
	dnsDone chan struct{}
}

// newNodeNetwork claims the mesh's pod network: in explicit mode a /24 of
// loopback addresses; in transparent mode a node namespace of its own.
func newNodeNetwork(transparent bool, stateDir, trellisPath string, con *console, log *slog.Logger) (*nodeNetwork, error) {
	n := &nodeNetwork{log: log, console: con, stateDir: stateDir, trellisPath: trellisPath}
	if !transparent {
		var err error
		if n.ipam, err = newIPAM(explicitPodNet, stateDir); err != nil {
			return nil, err
		}
		return n, nil
	}
	var err error
	if n.net, err = newPodNetwork(stateDir); err != nil {
		return nil, err
	}
	// The pod network is the mesh's own, inside its namespaces, so
	// every mesh can use all of it.
	n.ipam = &ipam{prefix: podNet, used: map[netip.Addr]bool{}, next: podNet.Addr().Next().Next()}
	n.vips = newVIPs()
	n.dial = dialIn(n.net.nodePath)
	return n, nil
}

// transform is the control plane's config transform: Service VIPs in
// transparent mode, nothing in explicit mode.
func (n *nodeNetwork) transform() func(*config.File) {
	if n.vips == nil {
		return nil
	}
	return n.vips.transform
}

// podAddr is where a new pod lives.
type podAddr struct {
	ip netip.Addr
	// netns and resolv are the pod's network namespace and resolv.conf
	// (transparent mode).
	netns, resolv string
}

// addPod gives a pod of w an IP and, in transparent mode, its namespace
// and resolv.conf.
func (n *nodeNetwork) addPod(w *Workload) (podAddr, error) {
	ip, err := n.ipam.alloc()
	if err != nil {
		return podAddr{}, err
	}
	a := podAddr{ip: ip}
	if n.net == nil {
		return a, nil
	}
	if a.netns, err = n.net.addPod(ip, w.Pod.Sidecar); err != nil {
		n.ipam.release(ip)
		return podAddr{}, err
	}
	a.resolv = filepath.Join(n.stateDir, "run", strings.ReplaceAll(ip.String(), ".", "-")+".resolv.conf")
	if err := os.WriteFile(a.resolv, []byte(meshdns.ResolvConf("cluster.local", w.Namespace, n.net.gateway)), stateFileMode); err != nil {
		n.net.removePod(ip)
		n.ipam.release(ip)
		return podAddr{}, err
	}
	return a, nil
}

// removePod gives back what addPod took for a finished pod.
func (n *nodeNetwork) removePod(p *pod) {
	if n.net != nil {
		n.net.removePod(p.ip)
		_ = os.Remove(p.resolv)
	}
	n.ipam.release(p.ip)
}

// enter is how a process joins a pod's namespaces; explicit mode has
// none. In transparent mode it starts the process through trellis itself
// (see EnterMain); the sidecar runs as the group the capture rules let
// through.
func (n *nodeNetwork) enter(p *pod, sidecar bool) func(*exec.Cmd) {
	if n == nil || n.net == nil {
		return nil
	}
	return func(cmd *exec.Cmd) {
		gid := "-"
		if sidecar {
			gid = strconv.Itoa(ProxyID)
		}
		resolv := p.resolv
		if resolv == "" {
			resolv = "-"
		}
		cmd.Args = append([]string{n.trellisPath, EnterCommand, p.netns, resolv, gid, "--", cmd.Path}, cmd.Args[1:]...)
		cmd.Path = n.trellisPath
	}
}

// probeDial is how probes reach pods; nil (explicit mode) dials from
// here.
func (n *nodeNetwork) probeDial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if n == nil {
		return nil
	}
	return n.dial
}

// start serves DNS and turns on forwarding in the node namespace, and
// installs the Service rules for snap (transparent mode only).
func (n *nodeNetwork) start(snap *store.Snapshot) error {
	if n.net == nil {
		return nil
	}
	if err := n.startDNS(snap); err != nil {
		return err
	}
	if err := n.net.enableForwarding(); err != nil {
		return fmt.Errorf("cannot enable forwarding in the node namespace: %w", err)
	}
	n.updateServices(snap)
	return nil
}

// startDNS serves the mesh's names on the pods' gateway, inside the node
// namespace, as a cluster's kube-dns does; every pod's resolv.conf points
// there.
func (n *nodeNetwork) startDNS(snap *store.Snapshot) error {
	addr := netip.AddrPortFrom(n.net.gateway, 53).String()
	var (
		pc  net.PacketConn
		lis net.Listener
	)
	err := inNetns(n.net.nodePath, func() error {
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
	n.dns = meshdns.New("cluster.local", n.log)
	n.updateDNS(snap, nil)
	ctx, cancel := context.WithCancel(context.Background())
	n.stopDNS = cancel
	n.dnsDone = make(chan struct{})
	go func() {
		defer close(n.dnsDone)
		if err := n.dns.Serve(ctx, pc, lis); err != nil {
			n.console.printf("mesh DNS stopped: %v", err)
		}
	}()
	return nil
}

// updateDNS gives the DNS server the Services as they are now: their
// VIPs, or for headless ones their ready pods.
func (n *nodeNetwork) updateDNS(snap *store.Snapshot, pods []*pod) {
	if n.dns == nil {
		return
	}
	var svcs []meshdns.Service
	for _, o := range snap.OfKind(config.Service) {
		svc, ok := o.Spec.(*corev1.Service)
		if !ok {
			continue
		}
		s := meshdns.Service{Namespace: o.Namespace, Name: o.Name, Headless: svc.Spec.ClusterIP == corev1.ClusterIPNone}
		if s.Headless {
			for _, p := range pods {
				if p.w.Namespace == o.Namespace && len(svc.Spec.Selector) > 0 && registry.Selects(svc.Spec.Selector, p.w.Pod.Labels) && p.ready() {
					s.PodIPs = append(s.PodIPs, p.ip)
				}
			}
		} else {
			for _, ip := range svc.Spec.ClusterIPs {
				if a, err := netip.ParseAddr(ip); err == nil {
					s.VIPs = append(s.VIPs, a)
				}
			}
		}
		svcs = append(svcs, s)
	}
	n.dns.SetServices(svcs)
}

// updateServices gives the node namespace's Service rules the VIPs and
// ready endpoints as they are now (see serviceTable).
func (n *nodeNetwork) updateServices(snap *store.Snapshot) {
	if n.net == nil {
		return
	}
	reg := registry.Build(snap.Objects, "cluster.local")
	if err := n.net.applyServiceRules(vipRules(reg.Services())); err != nil {
		n.console.printf("cannot update the Service rules: %v", err)
	}
}

// close stops DNS and gives back the pod network; safe on a partly
// started node.
func (n *nodeNetwork) close() {
	if n.stopDNS != nil {
		n.stopDNS()
		<-n.dnsDone
		n.stopDNS = nil
	}
	if n.ipam != nil {
		n.ipam.close()
		n.ipam = nil
	}
	if n.net != nil {
		n.net.close()
		n.net = nil
	}
}

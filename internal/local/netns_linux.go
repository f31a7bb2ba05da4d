//go:build linux

package local

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/trellismesh/trellis/internal/redirect"
)

// podNet is transparent mode's network, as a node's CNI would build it,
// but entirely inside namespaces the mesh creates: a node namespace
// holding a bridge (the pods' gateway, with no route anywhere else), and
// per pod a namespace joined to the bridge by a veth. The root namespace's
// interfaces and routes are never touched.
var podNet = netip.MustParsePrefix("10.244.0.0/16")

const netnsDir = "/run/netns"

type podNetwork struct {
	prefix   string // namespace names: PREFIX-node, PREFIX-N
	nodeName string
	nodePath string
	node     *netlink.Handle
	gateway  netip.Addr
}

// netnsPrefix names a mesh's namespaces after its state dir, so two
// meshes never collide and a new `up` finds what a killed one left.
func netnsPrefix(stateDir string) string {
	h := fnv.New32a()
	h.Write([]byte(stateDir))
	return fmt.Sprintf("trellis-%08x", h.Sum32())
}

func newPodNetwork(stateDir string) (*podNetwork, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("--transparent needs root (it creates network namespaces and nftables rules); run it with sudo, or drop --transparent for explicit mode")
	}
	n := &podNetwork{prefix: netnsPrefix(stateDir), gateway: podNet.Addr().Next()}
	n.nodeName = n.prefix + "-node"
	n.nodePath = filepath.Join(netnsDir, n.nodeName)
	n.removeLeftovers()
	if err := createNetns(n.nodeName); err != nil {
		return nil, fmt.Errorf("cannot create the node network namespace: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	h, err := handleAt(n.nodePath)
	if err != nil {
		return nil, err
	}
	n.node = h
	if err := linkUp(h, "lo"); err != nil {
		return nil, err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "trellis0"}}
	if err := h.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("cannot create the pod bridge: %w", err)
	}
	if err := h.AddrAdd(br, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.gateway, podNet.Bits()))}); err != nil {
		return nil, fmt.Errorf("cannot address the pod bridge: %w", err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("cannot bring the pod bridge up: %w", err)
	}
	ok = true
	return n, nil
}

// podNetns names pod ip's namespace.
func (n *podNetwork) podNetns(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("%s-%d-%d", n.prefix, b[2], b[3])
}

// addPod creates ip's namespace, wires it to the bridge and, for a pod
// with a sidecar, installs the capture rules. It returns the namespace's
// path.
func (n *podNetwork) addPod(ip netip.Addr, capture bool) (string, error) {
	name := n.podNetns(ip)
	path := filepath.Join(netnsDir, name)
	_ = deleteNetns(name) // a leftover of a pod that had this IP
	if err := createNetns(name); err != nil {
		return "", fmt.Errorf("cannot create the pod's network namespace: %w", err)
	}
	if err := n.wirePod(path, ip); err != nil {
		_ = deleteNetns(name)
		return "", err
	}
	if capture {
		rs := redirect.Build(redirect.Config{Table: "trellis", ProxyUIDs: []uint32{ProxyID}, ProxyGIDs: []uint32{ProxyID}, DNSPort: redirect.DefaultDNSPort})
		if err := redirect.ApplyIn(context.Background(), path, rs); err != nil {
			_ = deleteNetns(name)
			return "", fmt.Errorf("cannot install the pod's capture rules: %w", err)
		}
	}
	return path, nil
}

func (n *podNetwork) wirePod(path string, ip netip.Addr) error {
	b := ip.As4()
	host := fmt.Sprintf("veth%d-%d", b[2], b[3])
	peer := fmt.Sprintf("p%d-%d", b[2], b[3])
	_ = n.node.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}})
	br, err := n.node.LinkByName("trellis0")
	if err != nil {
		return fmt.Errorf("the pod bridge is gone: %w", err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index}, PeerName: peer}
	if err := n.node.LinkAdd(veth); err != nil {
		return fmt.Errorf("cannot create the pod's veth: %w", err)
	}
	if err := n.node.LinkSetUp(veth); err != nil {
		return fmt.Errorf("cannot bring the pod's veth up: %w", err)
	}
	pl, err := n.node.LinkByName(peer)
	if err != nil {
		return err
	}
	pns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer pns.Close()
	if err := n.node.LinkSetNsFd(pl, int(pns)); err != nil {
		return fmt.Errorf("cannot move the veth into the pod: %w", err)
	}
	ph, err := netlink.NewHandleAt(pns)
	if err != nil {
		return err
	}
	defer ph.Close()
	if err := linkUp(ph, "lo"); err != nil {
		return err
	}
	pl, err = ph.LinkByName(peer)
	if err != nil {
		return err
	}
	if err := ph.LinkSetName(pl, "eth0"); err != nil {
		return fmt.Errorf("cannot name the pod's interface: %w", err)
	}
	if err := ph.AddrAdd(pl, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(ip, podNet.Bits()))}); err != nil {
		return fmt.Errorf("cannot address the pod: %w", err)
	}
	if err := ph.LinkSetUp(pl); err != nil {
		return err
	}
	// Everything off the pod network (Service VIPs) goes to the gateway,
	// where, uncaptured, it dies: the node namespace routes nowhere else.
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: n.gateway.AsSlice()}); err != nil {
		return fmt.Errorf("cannot route the pod: %w", err)
	}
	return nil
}

func (n *podNetwork) removePod(ip netip.Addr) {
	b := ip.As4()
	_ = n.node.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("veth%d-%d", b[2], b[3])}})
	_ = deleteNetns(n.podNetns(ip))
}

// close removes every namespace of the mesh; their links, addresses and
// nftables rules go with them.
func (n *podNetwork) close() {
	if n.node != nil {
		n.node.Close()
		n.node = nil
	}
	n.removeLeftovers()
}

// removeLeftovers deletes every namespace named for this mesh.
func (n *podNetwork) removeLeftovers() int {
	entries, _ := os.ReadDir(netnsDir)
	removed := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), n.prefix+"-") {
			if deleteNetns(e.Name()) == nil {
				removed++
			}
		}
	}
	return removed
}

// createNetns makes a named namespace, as `ip netns add` does.
func createNetns(name string) error {
	return onNetnsThread(func() error {
		h, err := netns.NewNamed(name) // leaves the thread in it
		if err == nil {
			h.Close()
		}
		return err
	})
}

func deleteNetns(name string) error { return netns.DeleteNamed(name) }

func handleAt(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// inNetns runs fn on a thread switched into the namespace at path;
// sockets fn makes stay there.
func inNetns(path string, fn func() error) error {
	return onNetnsThread(func() error {
		target, err := netns.GetFromPath(path)
		if err != nil {
			return err
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return err
		}
		return fn()
	})
}

// onNetnsThread runs fn, which may switch its thread's network
// namespace, on a locked thread that is switched back afterwards.
// Threads are not thrown away lightly here: a child process started from
// a thread that exits gets its parent-death signal (Pdeathsig), so only a
// thread that cannot switch back is discarded (by staying locked).
func onNetnsThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// dialIn dials from the namespace at path, as a kubelet probes from the
// node.
func dialIn(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetns(path, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// EnterCommand is the hidden first argument with which trellis re-runs
// itself to start a process inside a pod (see EnterMain).
const EnterCommand = "__enter-pod"

// ProxyID is the group sidecars run as in transparent mode, and the uid
// and gid the capture rules let through (Istio's 1337). The sidecar keeps
// uid 0: a local proxy binary may sit where uid 1337 cannot read it.
const ProxyID = 1337

// EnterMain is `trellis __enter-pod NETNS RESOLV GID -- ARGV...`: it
// does what `ip netns exec` does — a private mount namespace with the
// pod's resolv.conf bound over /etc/resolv.conf, the pod's network
// namespace — switches to group GID when it is not "-", and execs ARGV.
// It returns only on failure.
func EnterMain(args []string) error {
	if len(args) < 5 || args[3] != "--" {
		return errors.New("usage: trellis " + EnterCommand + " NETNS RESOLV GID -- COMMAND [ARGS...]")
	}
	nsPath, resolv, gid, argv := args[0], args[1], args[2], args[4:]
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	if resolv != "-" {
		if err := unix.Mount(resolv, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind the pod's resolv.conf: %w", err)
		}
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open the pod's network namespace: %w", err)
	}
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("enter the pod's network namespace: %w", err)
	}
	if gid != "-" {
		var id int
		if _, err := fmt.Sscanf(gid, "%d", &id); err != nil {
			return fmt.Errorf("gid %q: %w", gid, err)
		}
		// Exec follows on this thread, so its credentials are what count.
		if err := unix.Setgroups(nil); err != nil {
			return err
		}
		if err := unix.Setresgid(id, id, id); err != nil {
			return err
		}
	}
	path, err := LookPath(argv[0], os.Environ())
	if err != nil {
		return err
	}
	return unix.Exec(path, argv, os.Environ())
}

// procAttr puts a process in its own group, so stopping it stops what it
// started, and has the kernel stop it if `trellis up` dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

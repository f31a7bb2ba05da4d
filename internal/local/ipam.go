package local

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// ipam hands out pod IPs from one /24 of a mesh's own. Explicit mode uses
// 127.10.0.0/16: Linux routes all of 127/8 to lo, so any of these
// addresses can be bound without touching an interface. Each mesh takes
// one /24, picked by hashing its state dir and held by a lock file, so
// two meshes (or parallel tests) never share an address.
type ipam struct {
	prefix netip.Prefix
	lock   *os.File

	mu   sync.Mutex
	used map[netip.Addr]bool
	next netip.Addr
}

// ipamLockDir holds one lock file per /24 in use on the machine.
func ipamLockDir() string { return filepath.Join(os.TempDir(), "trellis-ipam") }

// newIPAM claims a /24 of base (a /16) for the mesh in stateDir.
func newIPAM(base netip.Prefix, stateDir string) (*ipam, error) {
	if err := os.MkdirAll(ipamLockDir(), 0o777); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", ipamLockDir(), err)
	}
	h := fnv.New32a()
	h.Write([]byte(stateDir))
	start := int(h.Sum32() % 256)
	b := base.Addr().As4()
	for i := 0; i < 256; i++ {
		third := byte((start + i) % 256)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{b[0], b[1], third, 0}), 24)
		f, err := os.OpenFile(filepath.Join(ipamLockDir(), p.Addr().String()+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return nil, fmt.Errorf("cannot claim a pod network: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // another mesh's
			}
			return nil, fmt.Errorf("cannot claim a pod network: %w", err)
		}
		// .1 is left out, as a gateway would be.
		return &ipam{prefix: p, lock: f, used: map[netip.Addr]bool{}, next: p.Addr().Next().Next()}, nil
	}
	return nil, fmt.Errorf("every /24 of %s is held by another mesh: stop one with `trellis down`", base)
}

// alloc returns a free address, preferring ones not used recently so a
// restarted pod's peers never reach a stranger at its old address.
func (a *ipam) alloc() (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 0; i < 256; i++ {
		ip := a.next
		a.next = a.next.Next()
		if !a.prefix.Contains(a.next) || a.next.As4()[3] == 255 {
			a.next = a.prefix.Addr().Next().Next()
		}
		if ip.As4()[3] < 2 || ip.As4()[3] == 255 || a.used[ip] {
			continue
		}
		a.used[ip] = true
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("pod network %s is full (253 pods)", a.prefix)
}

func (a *ipam) release(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, ip)
}

// close gives the /24 back.
func (a *ipam) close() {
	if a.lock != nil {
		a.lock.Close()
	}
}

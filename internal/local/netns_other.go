//go:build !linux

package local

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"github.com/trellismesh/trellis/internal/registry"
)

// Transparent mode needs Linux network namespaces and nftables.
var errNotLinux = errors.New("--transparent needs Linux (network namespaces and nftables): drop it for explicit mode")

var podNet = netip.MustParsePrefix("10.244.0.0/16")

type podNetwork struct {
	nodePath string
	gateway  netip.Addr
}

func newPodNetwork(string) (*podNetwork, error)               { return nil, errNotLinux }
func (n *podNetwork) addPod(netip.Addr, bool) (string, error) { return "", errNotLinux }
func (n *podNetwork) removePod(netip.Addr)                    {}
func (n *podNetwork) close()                                  {}
func inNetns(string, func() error) error                      { return errNotLinux }

func dialIn(string) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errNotLinux }
}

// EnterCommand is the hidden first argument with which trellis re-runs
// itself to start a process inside a pod.
const EnterCommand = "__enter-pod"

// ProxyID is the sidecar's group in transparent mode.
const ProxyID = 1337

// EnterMain enters a pod's namespaces; Linux only.
func EnterMain([]string) error { return errNotLinux }

func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

type vipRule struct{}

func vipRules([]*registry.Service) []vipRule            { return nil }
func (n *podNetwork) applyServiceRules([]vipRule) error { return errNotLinux }
func (n *podNetwork) enableForwarding() error           { return errNotLinux }

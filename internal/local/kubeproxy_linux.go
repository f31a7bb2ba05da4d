//go:build linux

package local

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/trellismesh/trellis/internal/registry"
)

// serviceTable is the node namespace's nftables table that does
// kube-proxy's job for pods without a sidecar: their connections to a
// Service VIP reach the gateway (the node namespace), are DNATed to a
// random ready endpoint and masqueraded, so replies come back through the
// node and are un-NATed. Pods with a sidecar never get here: their
// sidecar captures VIP traffic inside the pod.
const serviceTable = "trellis-services"

// ipsDstNAT is conntrack's IPS_DST_NAT status bit (linux/netfilter/
// nf_conntrack_common.h), which x/sys/unix does not name.
const ipsDstNAT = 1 << 5

// vipRule is one Service port: VIP:port → one of the endpoints.
type vipRule struct {
	vip       netip.AddrPort
	endpoints []netip.AddrPort
}

// vipRules lists every ClusterIP Service port with its ready endpoints,
// in a stable order.
func vipRules(services []*registry.Service) []vipRule {
	var out []vipRule
	for _, s := range services {
		for _, a := range s.Addresses {
			vip, err := netip.ParseAddr(a)
			if err != nil || !vip.Is4() || !serviceNet.Contains(vip) {
				continue
			}
			for _, p := range s.Ports {
				r := vipRule{vip: netip.AddrPortFrom(vip, uint16(p.Port))}
				for _, in := range s.Instances[p.Port] {
					ip, err := netip.ParseAddr(in.Address)
					if err == nil && in.Ready && ip.Is4() {
						r.endpoints = append(r.endpoints, netip.AddrPortFrom(ip, uint16(in.Port)))
					}
				}
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].vip.Compare(out[j].vip) < 0 })
	return out
}

// applyServiceRules replaces the node namespace's Service table with
// rules for rs, atomically.
func (n *podNetwork) applyServiceRules(rs []vipRule) error {
	f, err := os.Open(n.nodePath)
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return fmt.Errorf("nftables in the node namespace: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: serviceTable}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: "services", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "masquerade", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	for _, r := range rs {
		match := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.vip.Addr().AsSlice()},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.vip.Port())},
		}
		if len(r.endpoints) == 0 {
			// No ready endpoint: refuse at once, as kube-proxy does,
			// rather than let the connection time out.
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: append(match, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})})
			continue
		}
		// Endpoint i of n is taken with probability 1/(n-i) when the ones
		// before it were not: uniform overall, as iptables' statistic
		// cascade in kube-proxy.
		for i, ep := range r.endpoints {
			exprs := append([]expr.Any(nil), match...)
			if left := len(r.endpoints) - i; left > 1 {
				exprs = append(exprs,
					&expr.Numgen{Register: 1, Modulus: uint32(left), Type: unix.NFT_NG_RANDOM},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
				)
			}
			exprs = append(exprs,
				&expr.Immediate{Register: 1, Data: ep.Addr().AsSlice()},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ep.Port())},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
			)
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: exprs})
		}
	}
	// Masquerade what was DNATed, so the endpoint answers through the
	// node (where conntrack restores the VIP) rather than straight back
	// over the bridge.
	dnat := make([]byte, 4)
	binary.NativeEndian.PutUint32(dnat, ipsDstNAT)
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: dnat, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Masq{},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing the Service rules in the node namespace: %w", err)
	}
	return nil
}

// enableForwarding lets the node namespace route between pods, which the
// Service DNAT needs (a new namespace starts with forwarding off).
func (n *podNetwork) enableForwarding() error {
	return inNetns(n.nodePath, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	})
}

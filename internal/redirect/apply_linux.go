//go:build linux

package redirect

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Apply installs rs in the calling thread's network namespace, replacing any table of the same
// name, in one netlink batch: the kernel either swaps in the whole table or keeps the old one,
// so traffic never sees half a ruleset.
func Apply(ctx context.Context, rs Ruleset) error { return apply(ctx, rs, "") }

// ApplyIn is Apply inside the network namespace at nsPath (e.g. /var/run/netns/NAME or
// /proc/PID/ns/net). The calling thread's namespace is untouched.
func ApplyIn(ctx context.Context, nsPath string, rs Ruleset) error { return apply(ctx, rs, nsPath) }

// Remove deletes the table named table from the calling thread's network namespace; removing a
// table that does not exist succeeds, so cleanup can always run.
func Remove(table string) error { return remove(table, "") }

// RemoveIn is Remove inside the network namespace at nsPath.
func RemoveIn(nsPath, table string) error { return remove(table, nsPath) }

func apply(ctx context.Context, rs Ruleset, nsPath string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rs.check(); err != nil {
		return fmt.Errorf("redirect: refusing to apply: %w", err)
	}
	c, done, err := conn(nsPath)
	if err != nil {
		return err
	}
	defer done()

	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: rs.Table}
	// Add (a no-op when it exists), delete, add again: nft's own idiom for an atomic replace.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	chains := make(map[string]*nftables.Chain, len(rs.Chains))
	for _, ch := range rs.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: t}
		if ch.Hook != HookNone {
			accept := nftables.ChainPolicyAccept
			nc.Type = nftables.ChainTypeNAT
			nc.Priority = nftables.ChainPriorityNATDest
			nc.Policy = &accept
			nc.Hooknum = nftables.ChainHookPrerouting
			if ch.Hook == HookOutput {
				nc.Hooknum = nftables.ChainHookOutput
			}
		}
		chains[ch.Name] = c.AddChain(nc)
	}
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[ch.Name], Exprs: encode(r)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("redirect: installing table inet %s: %w", rs.Table, explain(err))
	}
	return nil
}

func remove(table, nsPath string) error {
	if err := validTableName(table); err != nil {
		return fmt.Errorf("redirect: table: %w", err)
	}
	c, done, err := conn(nsPath)
	if err != nil {
		return err
	}
	defer done()
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	// Adding first makes the delete valid whether or not the table exists, in one transaction.
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("redirect: removing table inet %s: %w", table, explain(err))
	}
	return nil
}

// conn opens an nftables connection in nsPath's namespace, or the current one when empty. The
// netlink socket is created inside the target namespace and stays bound to it, so no thread of
// ours ever switches namespace here.
func conn(nsPath string) (*nftables.Conn, func(), error) {
	if nsPath == "" {
		c, err := nftables.New()
		if err != nil {
			return nil, nil, fmt.Errorf("redirect: opening netlink: %w", explain(err))
		}
		return c, func() {}, nil
	}
	f, err := os.Open(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("redirect: network namespace: %w", err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("redirect: opening netlink in %s: %w", nsPath, explain(err))
	}
	return c, func() { f.Close() }, nil
}

// explain adds what to do about the errors people actually hit.
func explain(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (needs root or CAP_NET_ADMIN in the target network namespace)", err)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%w (the kernel lacks nf_tables, its inet nat chains (Linux 5.2+) or nft_redir; load the modules or use a newer kernel)", err)
	}
	return err
}

const reg = 1 // NFT_REG_1: every comparison loads into it, then compares

func encode(r Rule) []expr.Any {
	var es []expr.Any
	cmp := func(not bool, data []byte) expr.Any {
		op := expr.CmpOpEq
		if not {
			op = expr.CmpOpNeq
		}
		return &expr.Cmp{Op: op, Register: reg, Data: data}
	}
	for _, m := range r.Matches {
		switch m.Kind {
		case MatchTCP:
			es = append(es, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmp(m.Not, []byte{unix.IPPROTO_TCP}))
		case MatchUDP:
			es = append(es, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmp(m.Not, []byte{unix.IPPROTO_UDP}))
		case MatchDPort, MatchUDPDPort:
			// The destination port sits at the same offset in TCP and UDP headers.
			es = append(es,
				&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				cmp(m.Not, binaryutil.BigEndian.PutUint16(m.Port)))
		case MatchOIFName:
			// The kernel compares the whole IFNAMSIZ buffer, NUL-padded, as nft emits it.
			name := make([]byte, unix.IFNAMSIZ)
			copy(name, m.Name)
			es = append(es, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg}, cmp(m.Not, name))
		case MatchSAddr, MatchDAddr:
			es = append(es, encodeAddr(m, cmp)...)
		case MatchSkUID:
			es = append(es, &expr.Meta{Key: expr.MetaKeySKUID, Register: reg}, cmp(m.Not, binaryutil.NativeEndian.PutUint32(m.ID)))
		case MatchSkGID:
			es = append(es, &expr.Meta{Key: expr.MetaKeySKGID, Register: reg}, cmp(m.Not, binaryutil.NativeEndian.PutUint32(m.ID)))
		case MatchMark:
			es = append(es, &expr.Meta{Key: expr.MetaKeyMARK, Register: reg}, cmp(m.Not, binaryutil.NativeEndian.PutUint32(m.ID)))
		}
	}
	switch v := r.Verdict; v.Kind {
	case VerdictReturn:
		es = append(es, &expr.Verdict{Kind: expr.VerdictReturn})
	case VerdictJump:
		es = append(es, &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain})
	case VerdictRedirect:
		es = append(es,
			&expr.Immediate{Register: reg, Data: binaryutil.BigEndian.PutUint16(v.Port)},
			&expr.Redir{RegisterProtoMin: reg})
	}
	return es
}

// encodeAddr matches the family first, as nft does for `ip daddr` in an inet table: without it
// the payload offset would read the wrong bytes of the other family's header, and a negated
// match would catch every packet of the other family.
func encodeAddr(m Match, cmp func(bool, []byte) expr.Any) []expr.Any {
	a := m.Prefix.Addr()
	proto, off, size := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4) // struct iphdr saddr
	if a.Is6() {
		proto, off, size = unix.NFPROTO_IPV6, 8, 16 // struct ipv6hdr saddr
	}
	if m.Kind == MatchDAddr {
		off += size
	}
	es := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{proto}},
	}
	if m.Prefix.Bits() == 0 {
		return es // the family is the whole match; check refuses a negated /0
	}
	es = append(es, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size})
	if !m.Prefix.IsSingleIP() {
		mask := make([]byte, size)
		for i := 0; i < m.Prefix.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		es = append(es, &expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: size, Mask: mask, Xor: make([]byte, size)})
	}
	return append(es, cmp(m.Not, m.Prefix.Masked().Addr().AsSlice()))
}

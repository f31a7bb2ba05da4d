package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Ruleset is one nftables table of family inet: what Build produces and Apply installs.
type Ruleset struct {
	Table  string
	Chains []Chain
}

// Hook attaches a base chain to a netfilter hook; regular chains have none and are only jumped to.
type Hook uint8

const (
	HookNone Hook = iota
	// HookPrerouting and HookOutput are nat chains at priority -100 (dstnat; nft only accepts
	// the name on prerouting), where REDIRECT must run for conntrack to keep the original
	// destination.
	HookPrerouting
	HookOutput
)

func (h Hook) String() string {
	switch h {
	case HookPrerouting:
		return "prerouting"
	case HookOutput:
		return "output"
	}
	return ""
}

// Chain is an ordered list of rules; the first rule with a verdict that matches decides.
type Chain struct {
	Name  string
	Hook  Hook
	Rules []Rule
}

// Rule applies its Verdict when every Match holds.
type Rule struct {
	Matches []Match
	Verdict Verdict
}

// MatchKind says which field a Match compares.
type MatchKind uint8

const (
	MatchTCP      MatchKind = iota + 1 // the packet is TCP (meta l4proto tcp)
	MatchDPort                         // TCP destination port is Port; needs a MatchTCP before it
	MatchOIFName                       // output interface is Name
	MatchSAddr                         // source address is in Prefix (IPv4 or IPv6)
	MatchDAddr                         // destination address is in Prefix
	MatchSkUID                         // the sending socket's owner uid is ID
	MatchSkGID                         // the sending socket's owner gid is ID
	MatchMark                          // the packet mark (SO_MARK) is ID
	MatchUDP                           // the packet is UDP (meta l4proto udp)
	MatchUDPDPort                      // UDP destination port is Port; needs a MatchUDP before it
)

// Match is one comparison; Not inverts it. An address match only ever matches packets of the
// prefix's family, negated or not, as in nft.
type Match struct {
	Kind   MatchKind
	Not    bool
	Port   uint16
	Prefix netip.Prefix
	ID     uint32
	Name   string
}

// VerdictKind says what a matching rule does.
type VerdictKind uint8

const (
	VerdictReturn   VerdictKind = iota + 1 // back to the calling chain (from a base chain: accept)
	VerdictJump                            // into Chain
	VerdictRedirect                        // to Port on this host; needs a MatchTCP or MatchUDP in the rule
)

// Verdict is a rule's action.
type Verdict struct {
	Kind  VerdictKind
	Chain string
	Port  uint16
}

// String renders rs as `nft -f` input that atomically replaces the table, just as Apply does:
// declaring the table first makes the delete succeed when it does not exist yet.
func (rs Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", rs.Table, rs.Table)
	fmt.Fprintf(&b, "table inet %s {\n", rs.Table)
	for i, c := range rs.Chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Hook != HookNone {
			fmt.Fprintf(&b, "\t\ttype nat hook %s priority -100; policy accept;\n", c.Hook)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func (r Rule) String() string {
	parts := make([]string, 0, len(r.Matches)+1)
	for _, m := range r.Matches {
		parts = append(parts, m.String())
	}
	return strings.Join(append(parts, r.Verdict.String()), " ")
}

func (m Match) String() string {
	op := " "
	if m.Not {
		op = " != "
	}
	switch m.Kind {
	case MatchTCP:
		return "meta l4proto" + op + "tcp"
	case MatchDPort:
		return fmt.Sprintf("tcp dport%s%d", op, m.Port)
	case MatchUDP:
		return "meta l4proto" + op + "udp"
	case MatchUDPDPort:
		return fmt.Sprintf("udp dport%s%d", op, m.Port)
	case MatchOIFName:
		return fmt.Sprintf("oifname%s%q", op, m.Name)
	case MatchSAddr, MatchDAddr:
		fam, dir := "ip", "saddr"
		if m.Prefix.Addr().Is6() {
			fam = "ip6"
		}
		if m.Kind == MatchDAddr {
			dir = "daddr"
		}
		a := m.Prefix.String()
		if m.Prefix.IsSingleIP() {
			a = m.Prefix.Addr().String()
		}
		return fam + " " + dir + op + a
	case MatchSkUID:
		return fmt.Sprintf("meta skuid%s%d", op, m.ID)
	case MatchSkGID:
		return fmt.Sprintf("meta skgid%s%d", op, m.ID)
	case MatchMark:
		return fmt.Sprintf("meta mark%s0x%08x", op, m.ID)
	}
	return fmt.Sprintf("<match kind %d>", m.Kind)
}

func (v Verdict) String() string {
	switch v.Kind {
	case VerdictReturn:
		return "return"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictRedirect:
		return fmt.Sprintf("redirect to :%d", v.Port)
	}
	return fmt.Sprintf("<verdict kind %d>", v.Kind)
}

// check finds what the kernel would refuse, or silently get wrong, before anything is sent.
func (rs Ruleset) check() error {
	if err := validTableName(rs.Table); err != nil {
		return fmt.Errorf("table: %w", err)
	}
	names := make(map[string]bool, len(rs.Chains))
	for _, c := range rs.Chains {
		if c.Name == "" || names[c.Name] {
			return fmt.Errorf("table %s: chain name %q is empty or repeated", rs.Table, c.Name)
		}
		names[c.Name] = true
	}
	var errs []error
	for _, c := range rs.Chains {
		for i, r := range c.Rules {
			at := fmt.Sprintf("chain %s rule %d (%s)", c.Name, i, r)
			tcp, udp := false, false
			for _, m := range r.Matches {
				switch m.Kind {
				case MatchTCP:
					tcp = tcp || !m.Not
				case MatchUDP:
					udp = udp || !m.Not
				case MatchDPort:
					if !tcp {
						errs = append(errs, fmt.Errorf("%s: tcp dport needs meta l4proto tcp before it", at))
					}
				case MatchUDPDPort:
					if !udp {
						errs = append(errs, fmt.Errorf("%s: udp dport needs meta l4proto udp before it", at))
					}
				case MatchSAddr, MatchDAddr:
					if !m.Prefix.IsValid() {
						errs = append(errs, fmt.Errorf("%s: invalid address prefix", at))
					} else if m.Not && m.Prefix.Bits() == 0 {
						errs = append(errs, fmt.Errorf("%s: a negated /0 matches nothing; drop the rule", at))
					}
				case MatchOIFName:
					if m.Name == "" || len(m.Name) > 15 {
						errs = append(errs, fmt.Errorf("%s: interface names are 1 to 15 bytes", at))
					}
				case MatchSkUID, MatchSkGID, MatchMark:
				default:
					errs = append(errs, fmt.Errorf("%s: unknown match kind %d", at, m.Kind))
				}
			}
			switch r.Verdict.Kind {
			case VerdictReturn:
			case VerdictJump:
				if !names[r.Verdict.Chain] {
					errs = append(errs, fmt.Errorf("%s: jump to a chain not in the table", at))
				}
			case VerdictRedirect:
				if !(tcp || udp) || r.Verdict.Port == 0 {
					errs = append(errs, fmt.Errorf("%s: redirect needs meta l4proto tcp or udp and a port", at))
				}
			default:
				errs = append(errs, fmt.Errorf("%s: unknown verdict kind %d", at, r.Verdict.Kind))
			}
		}
	}
	return errors.Join(errs...)
}

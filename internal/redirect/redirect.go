package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Ports of the sidecar contract (ARCHITECTURE.md, "Ports").
const (
	DefaultOutboundPort uint16 = 15001
	DefaultInboundPort  uint16 = 15006
	// TunnelPort is where other sidecars reach this pod's proxy directly (HBONE shape); capturing
	// it would hand the tunnel to the inbound listener instead of the tunnel listener.
	TunnelPort uint16 = 15008
	// DefaultDNSPort is where the sidecar answers captured DNS (Istio's DNS proxy port); Build
	// captures DNS only when Config.DNSPort is set.
	DefaultDNSPort uint16 = 15053
	// dnsPort is the port DNS queries are sent to.
	dnsPort uint16 = 53
)

// neverCapturedInbound are the proxy's own listeners that other pods and the kubelet reach
// directly: admin, tunnel, app-health, health, Prometheus.
var neverCapturedInbound = []uint16{15000, TunnelPort, 15020, 15021, 15090}

// NeverCapturedInboundPorts returns the inbound ports Build always excludes, whatever the Config.
func NeverCapturedInboundPorts() []uint16 { return slices.Clone(neverCapturedInbound) }

// inboundPassthroughSource is the source address the proxy binds when it hands inbound traffic
// to the app over loopback (Istio's 127.0.0.6 and ::6): that hop must never be captured again.
var (
	inboundPassthroughSource4 = netip.MustParsePrefix("127.0.0.6/32")
	inboundPassthroughSource6 = netip.MustParsePrefix("::6/128")
	localhost4                = netip.MustParsePrefix("127.0.0.1/32")
	localhost6                = netip.MustParsePrefix("::1/128")
	loopback4                 = netip.MustParsePrefix("127.0.0.0/8")
)

// Config says what to capture in one network namespace (one pod).
type Config struct {
	// Table names the nftables table (family inet) that holds every rule. Callers pick a name
	// unique per mesh, e.g. "trellis-<id>"; Apply replaces a table of that name and nothing else.
	Table string

	// OutboundPort is where captured outbound connections go (default 15001).
	OutboundPort uint16
	// InboundPort is where captured inbound connections go (default 15006).
	InboundPort uint16

	// The proxy's own sockets are recognised by any of these; its traffic is never sent back to
	// itself, which would loop. At least one must be set. ProxyMark 0 means unset, because every
	// unmarked packet carries mark 0.
	ProxyUIDs []uint32
	ProxyGIDs []uint32
	ProxyMark uint32

	// ExcludeInboundPorts are not captured inbound, in addition to NeverCapturedInboundPorts.
	ExcludeInboundPorts []uint16
	// ExcludeOutboundPorts are not captured outbound (destination port).
	ExcludeOutboundPorts []uint16
	// ExcludeOutboundCIDRs are destinations never captured; they win over IncludeOutboundCIDRs.
	ExcludeOutboundCIDRs []netip.Prefix
	// IncludeOutboundCIDRs limits outbound capture to these destinations; empty means all.
	// Listing a loopback range here captures the app's loopback traffic too, as in Istio.
	IncludeOutboundCIDRs []netip.Prefix

	// DNSPort, when not 0, captures every DNS query the pod sends (UDP and TCP to port 53, any
	// destination) to this port on the pod's loopback, except the proxy's own, which reach the
	// real nameserver (Istio's DNS proxying, ISTIO_META_DNS_CAPTURE; DefaultDNSPort is 15053).
	// 0 captures no DNS: UDP is untouched and TCP port 53 goes to the outbound port like any
	// other TCP.
	DNSPort uint16
}

// Validate reports what is wrong with c, naming the field to fix. Build assumes a valid Config.
func (c Config) Validate() error {
	var errs []error
	if err := validTableName(c.Table); err != nil {
		errs = append(errs, fmt.Errorf("table name (Table): %w", err))
	}
	out, in := c.ports()
	if out == in {
		errs = append(errs, fmt.Errorf("ports: OutboundPort and InboundPort are both %d: give each its own port", out))
	}
	if c.DNSPort != 0 && (c.DNSPort == out || c.DNSPort == in) {
		errs = append(errs, fmt.Errorf("ports: DNSPort %d is also the outbound or inbound port: give it its own port, e.g. %d", c.DNSPort, DefaultDNSPort))
	}
	if len(c.ProxyUIDs) == 0 && len(c.ProxyGIDs) == 0 && c.ProxyMark == 0 {
		errs = append(errs, errors.New("no proxy identity (ProxyUIDs, ProxyGIDs and ProxyMark are all unset): the proxy's own connections would be captured and loop; set the proxy's uid, gid or socket mark"))
	}
	for i, p := range c.ExcludeOutboundCIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("ExcludeOutboundCIDRs[%d]: not a valid prefix", i))
		}
	}
	for i, p := range c.IncludeOutboundCIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("IncludeOutboundCIDRs[%d]: not a valid prefix", i))
		}
	}
	for i, p := range c.ExcludeInboundPorts {
		if p == 0 {
			errs = append(errs, fmt.Errorf("ExcludeInboundPorts[%d]: port 0", i))
		}
	}
	for i, p := range c.ExcludeOutboundPorts {
		if p == 0 {
			errs = append(errs, fmt.Errorf("ExcludeOutboundPorts[%d]: port 0", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Prefixed once, so the field names below can keep their Go spelling.
		return fmt.Errorf("redirect config: %w", err)
	}
	return nil
}

func (c Config) ports() (out, in uint16) {
	out, in = c.OutboundPort, c.InboundPort
	if out == 0 {
		out = DefaultOutboundPort
	}
	if in == 0 {
		in = DefaultInboundPort
	}
	return out, in
}

// validTableName keeps names to what both `nft` (an identifier) and the kernel (at most 255
// bytes) accept, so String and Apply always agree.
func validTableName(name string) error {
	if name == "" {
		return errors.New("empty: pick a name unique to this mesh, e.g. trellis-<id>")
	}
	if len(name) > 64 {
		return fmt.Errorf("%q is longer than 64 bytes", name)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'):
		default:
			return fmt.Errorf("%q: use a letter first, then letters, digits, '-', '_' or '.'", name)
		}
	}
	return nil
}

// Chain names inside the table; base chains are named after their hooks. The others carry a
// prefix because words like "redirect" are nft keywords and would not parse as chain names.
const (
	ChainPrerouting = "prerouting"
	ChainOutput     = "output"
	ChainInbound    = "trellis-inbound"
	ChainOutbound   = "trellis-output"
	ChainRedirect   = "trellis-redirect"
	ChainInRedirect = "trellis-in-redirect"
	ChainDNS        = "trellis-dns"
)

// Build turns a valid Config (see Validate) into the capture rules.
func Build(cfg Config) Ruleset {
	outPort, inPort := cfg.ports()
	tcp := Match{Kind: MatchTCP}
	jump := func(chain string) Verdict { return Verdict{Kind: VerdictJump, Chain: chain} }
	ret := Verdict{Kind: VerdictReturn}
	rule := func(v Verdict, m ...Match) Rule { return Rule{Matches: m, Verdict: v} }

	// Inbound: everything arriving for this pod goes to the inbound port, except the proxy's
	// own listeners and what the user excludes.
	inbound := Chain{Name: ChainInbound}
	for _, p := range sortedPorts(neverCapturedInbound, cfg.ExcludeInboundPorts) {
		inbound.Rules = append(inbound.Rules, rule(ret, tcp, dport(p, false)))
	}
	inbound.Rules = append(inbound.Rules, rule(jump(ChainInRedirect)))

	var proxy []Match
	for _, uid := range dedupe(cfg.ProxyUIDs) {
		proxy = append(proxy, Match{Kind: MatchSkUID, ID: uid})
	}
	for _, gid := range dedupe(cfg.ProxyGIDs) {
		proxy = append(proxy, Match{Kind: MatchSkGID, ID: gid})
	}
	if cfg.ProxyMark != 0 {
		proxy = append(proxy, Match{Kind: MatchMark, ID: cfg.ProxyMark})
	}
	lo := Match{Kind: MatchOIFName, Name: "lo"}

	var o []Rule
	for _, p := range sortedPorts(nil, cfg.ExcludeOutboundPorts) {
		o = append(o, rule(ret, tcp, dport(p, false)))
	}
	o = append(o,
		rule(ret, lo, addr(MatchSAddr, inboundPassthroughSource4, false)),
		rule(ret, lo, addr(MatchSAddr, inboundPassthroughSource6, false)))
	// The proxy reaching this pod's own address (an app calling its own Service VIP: app →
	// proxy → proxy → app) goes over lo and must enter through the inbound port, as it would
	// from another pod. Tunnel traffic already is the inbound path.
	for _, id := range proxy {
		o = append(o,
			rule(jump(ChainInRedirect), lo, addr(MatchDAddr, localhost4, true), tcp, dport(TunnelPort, true), id),
			rule(jump(ChainInRedirect), lo, addr(MatchDAddr, localhost6, true), tcp, dport(TunnelPort, true), id))
	}
	// Apps talking to themselves over lo (localhost or their own pod IP) stay direct, unless
	// the user asked for loopback capture.
	if !includesLoopback(cfg.IncludeOutboundCIDRs) {
		o = append(o, rule(ret, lo))
	}
	for _, id := range proxy {
		o = append(o, rule(ret, id))
	}
	o = append(o,
		rule(ret, addr(MatchDAddr, localhost4, false)),
		rule(ret, addr(MatchDAddr, localhost6, false)))
	for _, p := range dedupe(masked(cfg.ExcludeOutboundCIDRs)) {
		o = append(o, rule(ret, addr(MatchDAddr, p, false)))
	}
	if len(cfg.IncludeOutboundCIDRs) == 0 {
		o = append(o, rule(jump(ChainRedirect)))
	} else {
		for _, p := range dedupe(masked(cfg.IncludeOutboundCIDRs)) {
			o = append(o, rule(jump(ChainRedirect), addr(MatchDAddr, p, false)))
		}
	}

	output := []Rule{rule(jump(ChainOutbound), tcp)}
	var dns []Chain
	if cfg.DNSPort != 0 {
		// DNS first, both transports, whatever the destination: the app's resolver names the
		// pod's nameserver, and the proxy (excluded below) forwards what it cannot answer there.
		udp := Match{Kind: MatchUDP}
		output = append([]Rule{
			rule(jump(ChainDNS), udp, Match{Kind: MatchUDPDPort, Port: dnsPort}),
			rule(jump(ChainDNS), tcp, dport(dnsPort, false)),
		}, output...)
		var d []Rule
		for _, id := range proxy {
			d = append(d, rule(ret, id))
		}
		d = append(d,
			rule(Verdict{Kind: VerdictRedirect, Port: cfg.DNSPort}, udp),
			rule(Verdict{Kind: VerdictRedirect, Port: cfg.DNSPort}, tcp))
		dns = []Chain{{Name: ChainDNS, Rules: d}}
	}

	return Ruleset{
		Table: cfg.Table,
		Chains: append([]Chain{
			{Name: ChainPrerouting, Hook: HookPrerouting, Rules: []Rule{rule(jump(ChainInbound), tcp)}},
			{Name: ChainOutput, Hook: HookOutput, Rules: output},
			inbound,
			{Name: ChainOutbound, Rules: o},
			{Name: ChainRedirect, Rules: []Rule{rule(Verdict{Kind: VerdictRedirect, Port: outPort}, tcp)}},
			{Name: ChainInRedirect, Rules: []Rule{rule(Verdict{Kind: VerdictRedirect, Port: inPort}, tcp)}},
		}, dns...),
	}
}

func dport(p uint16, not bool) Match { return Match{Kind: MatchDPort, Port: p, Not: not} }

func addr(k MatchKind, p netip.Prefix, not bool) Match {
	return Match{Kind: k, Prefix: p, Not: not}
}

func includesLoopback(cidrs []netip.Prefix) bool {
	for _, p := range cidrs {
		if p.Overlaps(loopback4) || p.Overlaps(localhost6) {
			return true
		}
	}
	return false
}

func sortedPorts(always, extra []uint16) []uint16 {
	ps := append(slices.Clone(always), extra...)
	slices.Sort(ps)
	return slices.Compact(ps)
}

func masked(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	return out
}

// dedupe keeps the first of each value and the caller's order, which is the rules' order.
func dedupe[T comparable](in []T) []T {
	var out []T
	seen := make(map[T]bool, len(in))
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

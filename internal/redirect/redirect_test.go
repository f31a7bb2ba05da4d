package redirect

import (
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/testing/needs"
)

var update = flag.Bool("update", false, "rewrite testdata/*.nft from Build's output")

func goldenConfigs() map[string]Config {
	pfx := netip.MustParsePrefix
	return map[string]Config{
		// What a sidecar gets by default: Istio's uid and gid 1337.
		"default": {Table: "trellis-golden", ProxyUIDs: []uint32{1337}, ProxyGIDs: []uint32{1337}},
		// A proxy recognised by its socket mark, with the usual exclusions.
		"mark_exclusions": {
			Table:                "trellis-golden",
			ProxyMark:            0x539,
			ExcludeInboundPorts:  []uint16{22, 15021, 8080},
			ExcludeOutboundPorts: []uint16{3306, 15012},
			ExcludeOutboundCIDRs: []netip.Prefix{pfx("169.254.169.254/32"), pfx("fd00::/8"), pfx("10.0.7.9/16")},
		},
		// Capture only mesh addresses, on custom ports.
		"include_cidrs": {
			Table:                "mesh-a.1",
			OutboundPort:         25001,
			InboundPort:          25006,
			ProxyUIDs:            []uint32{1337, 1337, 0},
			IncludeOutboundCIDRs: []netip.Prefix{pfx("10.96.0.0/16"), pfx("10.244.0.0/16")},
			ExcludeOutboundCIDRs: []netip.Prefix{pfx("10.96.0.1/32")},
		},
		// DNS capture (Istio's DNS proxying) on top of the default identity.
		"dns_capture": {Table: "trellis-golden", ProxyUIDs: []uint32{1337}, ProxyGIDs: []uint32{1337}, DNSPort: DefaultDNSPort},
		// Loopback listed in the include ranges: apps' loopback traffic is captured too.
		"include_loopback": {
			Table:                "trellis-golden",
			ProxyUIDs:            []uint32{1337},
			IncludeOutboundCIDRs: []netip.Prefix{pfx("127.0.0.0/8"), pfx("10.0.0.0/8")},
		},
	}
}

func TestBuildGolden(t *testing.T) {
	for name, cfg := range goldenConfigs() {
		t.Run(name, func(t *testing.T) {
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			rs := Build(cfg)
			if err := rs.check(); err != nil {
				t.Fatalf("check: %v", err)
			}
			got := rs.String()
			path := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Build(%s) (-golden +got); run go test -update if the change is intended:\n%s", name, diff)
			}
		})
	}
}

// TestGoldenParsesWithNft checks that the String form really is nft input, using the nft CLI
// when it is installed; it only parses (-c), inside a throwaway network namespace.
func TestGoldenParsesWithNft(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		needs.Skip(t, "nft CLI not installed (Debian package nftables)")
	}
	if os.Geteuid() != 0 {
		needs.Skip(t, "nft -c needs root (or CAP_NET_ADMIN)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		needs.Skip(t, "unshare not installed (util-linux)")
	}
	for name := range goldenConfigs() {
		out, err := exec.Command(unshare, "-n", nft, "-c", "-f", filepath.Join("testdata", name+".nft")).CombinedOutput()
		if err != nil {
			t.Errorf("nft -c -f testdata/%s.nft: %v\n%s", name, err, out)
		}
	}
}

func TestBuildOrder(t *testing.T) {
	rs := Build(Config{Table: "t", ProxyUIDs: []uint32{1337}, ExcludeOutboundPorts: []uint16{3306}})
	out := chainNamed(t, rs, ChainOutbound)
	// Istio's order matters: excluded ports first, the proxy's lo hop to its own pod before the
	// blanket lo return, the proxy's own traffic before the final redirect.
	want := []string{
		"meta l4proto tcp tcp dport 3306 return",
		`oifname "lo" ip saddr 127.0.0.6 return`,
		`oifname "lo" ip6 saddr ::6 return`,
		`oifname "lo" ip daddr != 127.0.0.1 meta l4proto tcp tcp dport != 15008 meta skuid 1337 jump trellis-in-redirect`,
		`oifname "lo" ip6 daddr != ::1 meta l4proto tcp tcp dport != 15008 meta skuid 1337 jump trellis-in-redirect`,
		`oifname "lo" return`,
		"meta skuid 1337 return",
		"ip daddr 127.0.0.1 return",
		"ip6 daddr ::1 return",
		"jump trellis-redirect",
	}
	var got []string
	for _, r := range out.Rules {
		got = append(got, r.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outbound chain (-want +got):\n%s", diff)
	}
	in := chainNamed(t, rs, ChainInbound)
	var ports []uint16
	for _, r := range in.Rules[:len(in.Rules)-1] {
		ports = append(ports, r.Matches[1].Port)
	}
	if diff := cmp.Diff([]uint16{15000, 15008, 15020, 15021, 15090}, ports); diff != "" {
		t.Errorf("never-captured inbound ports (-want +got):\n%s", diff)
	}
}

func TestBuildDNSCapture(t *testing.T) {
	base := Config{Table: "t", ProxyGIDs: []uint32{1337}, ProxyMark: 0x539}
	withDNS := base
	withDNS.DNSPort = 15053
	rs := Build(withDNS)
	if err := rs.check(); err != nil {
		t.Fatalf("check: %v", err)
	}
	rules := func(c Chain) []string {
		var out []string
		for _, r := range c.Rules {
			out = append(out, r.String())
		}
		return out
	}
	// DNS is looked at before the TCP capture, so TCP port 53 reaches the DNS port, not 15001.
	wantOutput := []string{
		"meta l4proto udp udp dport 53 jump trellis-dns",
		"meta l4proto tcp tcp dport 53 jump trellis-dns",
		"meta l4proto tcp jump trellis-output",
	}
	if diff := cmp.Diff(wantOutput, rules(chainNamed(t, rs, ChainOutput))); diff != "" {
		t.Errorf("output chain (-want +got):\n%s", diff)
	}
	// The proxy's own queries (its forwards to the real nameserver) are never captured.
	wantDNS := []string{
		"meta skgid 1337 return",
		"meta mark 0x00000539 return",
		"meta l4proto udp redirect to :15053",
		"meta l4proto tcp redirect to :15053",
	}
	if diff := cmp.Diff(wantDNS, rules(chainNamed(t, rs, ChainDNS))); diff != "" {
		t.Errorf("dns chain (-want +got):\n%s", diff)
	}
	// Everything else is what it was without DNS capture.
	without := Build(base)
	for _, c := range without.Chains {
		if c.Name == ChainOutput {
			continue
		}
		if diff := cmp.Diff(rules(c), rules(chainNamed(t, rs, c.Name))); diff != "" {
			t.Errorf("chain %s changed with DNS capture (-without +with):\n%s", c.Name, diff)
		}
	}
	if got, want := len(rs.Chains), len(without.Chains)+1; got != want {
		t.Errorf("%d chains with DNS capture, want %d", got, want)
	}
	for _, c := range without.Chains {
		if c.Name == ChainDNS {
			t.Errorf("DNSPort 0 still builds chain %s", ChainDNS)
		}
		for _, r := range c.Rules {
			for _, m := range r.Matches {
				if m.Kind == MatchUDP || m.Kind == MatchUDPDPort || m.Kind == MatchDPort && m.Port == 53 {
					t.Errorf("DNSPort 0 builds a DNS rule: %s", r)
				}
			}
		}
	}
}

func chainNamed(t *testing.T, rs Ruleset, name string) Chain {
	t.Helper()
	for _, c := range rs.Chains {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no chain %s in %s", name, rs)
	return Chain{}
}

func TestValidate(t *testing.T) {
	ok := Config{Table: "trellis-1", ProxyUIDs: []uint32{1337}}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no table", func(c *Config) { c.Table = "" }, "(Table): empty"},
		{"bad table", func(c *Config) { c.Table = "1x" }, "use a letter first"},
		{"space in table", func(c *Config) { c.Table = "a b" }, "use a letter first"},
		{"no identity", func(c *Config) { c.ProxyUIDs = nil }, "would be captured and loop"},
		{"same ports", func(c *Config) { c.InboundPort = 15001 }, "both 15001"},
		{"dns port clash", func(c *Config) { c.DNSPort = 15006 }, "DNSPort 15006"},
		{"bad cidr", func(c *Config) { c.ExcludeOutboundCIDRs = []netip.Prefix{{}} }, "ExcludeOutboundCIDRs[0]"},
		{"port 0", func(c *Config) { c.ExcludeInboundPorts = []uint16{0} }, "ExcludeInboundPorts[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
	if err := (Config{Table: "t", ProxyMark: 1}).Validate(); err != nil {
		t.Errorf("a mark alone identifies the proxy: %v", err)
	}
}

func TestCheckRefusesBrokenRulesets(t *testing.T) {
	tcp := Match{Kind: MatchTCP}
	for _, tc := range []struct {
		name string
		rs   Ruleset
		want string
	}{
		{"dport without tcp", Ruleset{Table: "t", Chains: []Chain{{Name: "c", Rules: []Rule{{Matches: []Match{{Kind: MatchDPort, Port: 1}}, Verdict: Verdict{Kind: VerdictReturn}}}}}}, "needs meta l4proto tcp"},
		{"jump nowhere", Ruleset{Table: "t", Chains: []Chain{{Name: "c", Rules: []Rule{{Verdict: Verdict{Kind: VerdictJump, Chain: "x"}}}}}}, "not in the table"},
		{"udp dport without udp", Ruleset{Table: "t", Chains: []Chain{{Name: "c", Rules: []Rule{{Matches: []Match{tcp, {Kind: MatchUDPDPort, Port: 53}}, Verdict: Verdict{Kind: VerdictReturn}}}}}}, "needs meta l4proto udp"},
		{"redirect without tcp", Ruleset{Table: "t", Chains: []Chain{{Name: "c", Rules: []Rule{{Verdict: Verdict{Kind: VerdictRedirect, Port: 1}}}}}}, "redirect needs"},
		{"redirect without port", Ruleset{Table: "t", Chains: []Chain{{Name: "c", Rules: []Rule{{Matches: []Match{tcp}, Verdict: Verdict{Kind: VerdictRedirect}}}}}}, "redirect needs"},
		{"repeated chain", Ruleset{Table: "t", Chains: []Chain{{Name: "c"}, {Name: "c"}}}, "repeated"},
		{"no verdict", Ruleset{Table: "t", Chains: []Chain{{Name: "c", Rules: []Rule{{}}}}}, "unknown verdict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rs.check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

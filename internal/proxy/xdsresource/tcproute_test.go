package xdsresource_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// tcpRouteConfig gives the seed mesh's db (TCP, VIP 10.96.0.20) tcp routes
// and a TLS service tls routes, with weights, subsets and subnets.
var tcpRouteConfig = []string{`
apiVersion: v1
kind: Service
metadata: {name: secure}
spec:
  clusterIP: 10.96.0.30
  selector: {app: secure}
  ports: [{name: tls, port: 443}]
`, `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db
  subsets:
  - {name: primary, labels: {role: primary}}
  - {name: replica, labels: {role: replica}}
`, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{destinationSubnets: [10.96.0.0/16, 10.97.0.1]}]
    route: [{destination: {host: db, subset: primary}}]
  - match: [{sourceLabels: {app: reviews}}]
    route:
    - {destination: {host: db, subset: primary}, weight: 80}
    - {destination: {host: db, subset: replica}, weight: 20}
`, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure, "*.secure.example"]
  tls:
  - match: [{sniHosts: [v1.secure.example]}]
    route: [{destination: {host: secure}}]
  - match: [{sniHosts: [v1.secure.example, "*.secure.example"], destinationSubnets: [10.96.0.0/24]}]
    route:
    - {destination: {host: secure}, weight: 1}
    - {destination: {host: db, port: {number: 5432}}, weight: 3}
`}

// The translator's tcp and tls route chains decode into what the
// go-control-plane messages say, and into the chains the routes mean.
func TestTranslatorTCPRouteOutput(t *testing.T) {
	res := translate.ForProxy(world(t, tcpRouteConfig...), sidecarProxy, nil)
	found := map[string]*listenerv3.Listener{}
	for _, l := range res.Listeners {
		check(t, xdsresource.ListenerType, l, l.Name, wantListener(t, l))
		found[l.Name] = l
	}
	for name, want := range map[string][]xdsresource.FilterChain{
		"10.96.0.20_5432": {
			{Name: "db.default.tcp[0]", PrefixRanges: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("10.97.0.1/32")},
				TCP: &xdsresource.TCPProxy{Stats: istioStats, StatPrefix: "outbound|5432|primary|db.default.svc.cluster.local", Cluster: "outbound|5432|primary|db.default.svc.cluster.local"}},
			{Name: "db.default.tcp[1]", TCP: &xdsresource.TCPProxy{Stats: istioStats, StatPrefix: "outbound|5432||db.default.svc.cluster.local", TotalWeight: 100,
				WeightedClusters: []xdsresource.ClusterWeight{{Name: "outbound|5432|primary|db.default.svc.cluster.local", Weight: 80}, {Name: "outbound|5432|replica|db.default.svc.cluster.local", Weight: 20}}}},
		},
		"10.96.0.30_443": {
			{Name: "secure.default.tls[0].match[0]", ServerNames: []string{"v1.secure.example"},
				TCP: &xdsresource.TCPProxy{Stats: istioStats, StatPrefix: "outbound|443||secure.default.svc.cluster.local", Cluster: "outbound|443||secure.default.svc.cluster.local"}},
			{Name: "secure.default.tls[1].match[0]", PrefixRanges: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/24")}, ServerNames: []string{"v1.secure.example", "*.secure.example"},
				TCP: &xdsresource.TCPProxy{Stats: istioStats, StatPrefix: "outbound|443||secure.default.svc.cluster.local", TotalWeight: 4,
					WeightedClusters: []xdsresource.ClusterWeight{{Name: "outbound|443||secure.default.svc.cluster.local", Weight: 1}, {Name: "outbound|5432||db.default.svc.cluster.local", Weight: 3}}}},
		},
	} {
		l := found[name]
		if l == nil {
			t.Fatalf("no listener %s", name)
		}
		got, err := xdsresource.DecodeListener(marshal(t, l))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got.FilterChains, cmpPrefix); d != "" {
			t.Errorf("%s chains (-want +got):\n%s", name, d)
		}
	}
}

func cidr(p string) *corev3.CidrRange {
	pr := netip.MustParsePrefix(p)
	return &corev3.CidrRange{AddressPrefix: pr.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(pr.Bits()))}
}

func weightedTCP(t testing.TB, cws ...*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t,
		&tcpproxyv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{Clusters: cws}}})}}
}

// A connection takes the chain Envoy would give it: port, then the
// longest destination prefix, then the exact or longest wildcard server
// name, without backtracking.
func TestChainFor(t *testing.T) {
	chain := func(name string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: []*listenerv3.Filter{tcpFilter(t, name)}}
	}
	l := &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 443), FilterChains: []*listenerv3.FilterChain{
		chain("wide-a", &listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0/8")}, ServerNames: []string{"a.example.com"}}),
		chain("narrow", &listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.1.0.0/16")}}),
		chain("wild", &listenerv3.FilterChainMatch{ServerNames: []string{"*.example.com"}}),
		chain("exact", &listenerv3.FilterChainMatch{ServerNames: []string{"X.example.com."}}),
		chain("any", nil),
		chain("port", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9000)}),
	}}
	dl, err := xdsresource.DecodeListener(marshal(t, l))
	if err != nil {
		t.Fatal(err)
	}
	if !dl.MatchesSNI() {
		t.Error("MatchesSNI = false for a listener with server names")
	}
	for _, tc := range []struct {
		dst, sni, want string
	}{
		{"10.1.2.3:443", "", "narrow"},
		{"10.1.2.3:443", "a.example.com", "narrow"}, // the address decides first
		{"10.2.0.1:443", "a.example.com", "wide-a"},
		{"10.2.0.1:443", "b.example.com", ""}, // no backtracking to the chains without prefix
		{"192.168.0.1:443", "x.example.com", "exact"},
		{"192.168.0.1:443", "y.example.com", "wild"},
		{"192.168.0.1:443", "a.b.example.com", "wild"},
		{"192.168.0.1:443", "example.com", "any"},
		{"192.168.0.1:443", "", "any"},
		{"10.1.2.3:9000", "", "port"},
		{":443", "", "any"}, // address unknown
	} {
		var dst netip.AddrPort
		if strings.HasPrefix(tc.dst, ":") {
			dst = netip.AddrPortFrom(netip.Addr{}, 443)
		} else {
			dst = netip.MustParseAddrPort(tc.dst)
		}
		got := ""
		if fc := dl.ChainFor(dst, tc.sni); fc != nil {
			got = fc.Name
		}
		if got != tc.want {
			t.Errorf("ChainFor(%s, %q) = %q, want %q", tc.dst, tc.sni, got, tc.want)
		}
	}
	if plain, err := xdsresource.DecodeListener(marshal(t, &listenerv3.Listener{Name: "p", Address: addr("0.0.0.0", 1),
		FilterChains: []*listenerv3.FilterChain{chain("only", nil)}})); err != nil || plain.MatchesSNI() {
		t.Errorf("a listener without server names: MatchesSNI %v, err %v", plain != nil && plain.MatchesSNI(), err)
	}
}

// Weighted clusters are chosen in proportion to their weights.
func TestTCPProxyPick(t *testing.T) {
	tp := &xdsresource.TCPProxy{WeightedClusters: []xdsresource.ClusterWeight{{Name: "a", Weight: 1}, {Name: "b", Weight: 3}}, TotalWeight: 4}
	got := map[string]int{}
	for r := range uint64(8) {
		got[tp.Pick(r)]++
	}
	if got["a"] != 2 || got["b"] != 6 {
		t.Errorf("picks over two full cycles = %v, want a:2 b:6", got)
	}
	if c := (&xdsresource.TCPProxy{Cluster: "one"}).Pick(7); c != "one" {
		t.Errorf("single cluster Pick = %q", c)
	}
}

func TestTCPRouteErrors(t *testing.T) {
	listener := func(fcs ...*listenerv3.FilterChain) *listenerv3.Listener {
		return &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1), FilterChains: fcs}
	}
	match := func(m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{FilterChainMatch: m, Filters: []*listenerv3.Filter{tcpFilter(t, "c")}}
	}
	cw := func(name string, w uint32) *tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight {
		return &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: name, Weight: w}
	}
	for _, tc := range []struct {
		name string
		in   *listenerv3.Listener
		want string
	}{
		{"same match twice", listener(match(&listenerv3.FilterChainMatch{ServerNames: []string{"a", "b"}}), match(&listenerv3.FilterChainMatch{ServerNames: []string{"c", "b"}})),
			`filter_chains[1]: matches the same connections as filter_chains[0]`},
		{"two catch-alls", listener(match(nil), match(&listenerv3.FilterChainMatch{})), `filter_chains[1]: matches the same connections as filter_chains[0]`},
		{"same prefix written twice", listener(match(&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0/8")}}),
			match(&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.9.9.9", PrefixLen: wrapperspb.UInt32(8)}}})),
			`filter_chains[1]: matches the same connections as filter_chains[0]`},
		{"wildcard inside", listener(match(&listenerv3.FilterChainMatch{ServerNames: []string{"a.*.com"}})),
			`filter_chains[0].filter_chain_match.server_names[0]: "a.*.com": a wildcard may only be a leading "*."`},
		{"empty server name", listener(match(&listenerv3.FilterChainMatch{ServerNames: []string{""}})),
			`filter_chain_match.server_names[0]: must not be empty`},
		{"prefix not an address", listener(match(&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "db", PrefixLen: wrapperspb.UInt32(8)}}})),
			`filter_chains[0].filter_chain_match.prefix_ranges[0].address_prefix: "db" is not an IP address`},
		{"prefix too long", listener(match(&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0/8"), {AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(33)}}})),
			`filter_chain_match.prefix_ranges[1].prefix_len: 33 is longer than the 32 bits of 10.0.0.0`},
		{"zero weight", listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{weightedTCP(t, cw("a", 1), cw("b", 0))}}),
			`filters[0].typed_config.weighted_clusters.clusters[1].weight: must be >= 1`},
		{"unnamed weighted cluster", listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{weightedTCP(t, cw("", 1))}}),
			`typed_config.weighted_clusters.clusters[0].name: required`},
		{"weighted metadata match", listener(&listenerv3.FilterChain{Filters: []*listenerv3.Filter{weightedTCP(t,
			&tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: "a", Weight: 1, MetadataMatch: &corev3.Metadata{}})}}),
			`weighted_clusters.clusters[0].metadata_match: not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, res, err := decode(xdsresource.ListenerType, marshal(t, tc.in))
			if err == nil {
				t.Fatalf("no error; decoded %+v", res)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\ndoes not contain %q", err, tc.want)
			}
			var xe *xdsresource.Error
			if !errors.As(err, &xe) {
				t.Fatalf("error %T is not an *xdsresource.Error", err)
			}
		})
	}
}

// Routes that overlap (the same server names or subnets in several
// matches, of one route or several) still give listeners the sidecar
// takes: the translator leaves out of each chain what earlier ones match,
// so one VirtualService cannot get every listener of a proxy NACKed.
func TestTranslatorOverlappingL4Routes(t *testing.T) {
	res := translate.ForProxy(world(t, append(tcpRouteConfig[:2:2], `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{destinationSubnets: [10.96.0.0/16]}, {destinationSubnets: [10.96.0.0/16, 10.96.1.0/24]}]
    route: [{destination: {host: db}}]
  - match: [{destinationSubnets: [10.96.1.0/24, 10.96.0.0/16]}]
    route: [{destination: {host: db}}]
`, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure}
spec:
  hosts: [secure, "*.secure.example"]
  tls:
  - match: [{sniHosts: [a.secure.example]}, {sniHosts: [a.secure.example, b.secure.example]}]
    route: [{destination: {host: secure}}]
  - match: [{sniHosts: [b.secure.example, "*.secure.example"], destinationSubnets: [10.96.0.30]}, {sniHosts: [b.secure.example]}]
    route: [{destination: {host: db, port: {number: 5432}}}]
`)...), sidecarProxy, nil)
	n := 0
	for _, l := range res.Listeners {
		if l.Name == "10.96.0.20_5432" || l.Name == "10.96.0.30_443" {
			n++
			if len(l.FilterChains) < 2 {
				t.Errorf("listener %s has %d chains, want the routes' own", l.Name, len(l.FilterChains))
			}
		}
		if _, err := xdsresource.DecodeListener(marshal(t, l)); err != nil {
			t.Errorf("listener %s: %v", l.Name, err)
		}
	}
	if n != 2 {
		t.Fatalf("found %d of the 2 routed listeners", n)
	}
}

package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/registry"
)

// l4Chains builds the filter chains of a non-HTTP service port's
// outbound listener from the VirtualService for the service, as Istio
// builds a sidecar's:
//
//   - TLS and HTTPS ports take the VirtualService's tls routes: a chain per
//     match that concerns this proxy and port, selected at run time by the
//     ClientHello's server name (sniHosts) and destination address
//     (destinationSubnets). When some tls match applies there is no other
//     chain, so a connection whose server name no route names is closed;
//     when none applies, everything goes to the service.
//   - Other ports take the tcp routes, in order: a route without match, or
//     with a match that concerns this proxy and port and names no
//     destinationSubnets, takes all remaining traffic and ends the list; a
//     match with destinationSubnets takes connections to those addresses.
//     Whatever no route took goes to the service.
//
// What a match says about the caller (sourceLabels, sourceNamespace,
// gateways) and port is decided here, since each proxy gets its own
// config. Where two routes match the same connections the first keeps
// them: later chains lose those server names and subnets, and vanish when
// nothing is left, so no two chains ever match alike (Envoy refuses that,
// and so does the sidecar).
//
// The VirtualService o is the proxy's for the service (nil for none: the
// service's default chain alone); it is a parameter so that the guard can
// check one VirtualService's chains and fall back without them (guard.go).
func (t *translation) l4Chains(o *config.Object, vs *networking.VirtualService, svc *registry.Service, port registry.Port) []*listenerv3.FilterChain {
	defaultCluster := ClusterName("outbound", port.Port, "", svc.Hostname)
	def := &listenerv3.FilterChain{Name: defaultCluster, Filters: []*listenerv3.Filter{t.tcpProxyLimits(tcpProxyFilter(defaultCluster, defaultCluster), svc.Hostname, svc.Namespace)}}
	if vs == nil {
		return []*listenerv3.FilterChain{def}
	}
	cb := chainBuilder{}
	if port.Protocol == registry.TLS || port.Protocol == registry.HTTPS {
		for i, r := range vs.GetTls() {
			for j, m := range r.GetMatch() {
				if !t.l4MatchApplies(m.GetPort(), m.GetSourceLabels(), m.GetSourceNamespace(), m.GetGateways(), port.Port) {
					continue
				}
				cb.matched = true
				name := fmt.Sprintf("%s.%s.tls[%d].match[%d]", o.Name, o.Namespace, i, j)
				// The validator keeps sniHosts to lower-case names and "*."
				// wildcards (no "*": sidecars cannot have a "*" host), as
				// Envoy's server_names take them.
				cb.add(name, m.GetDestinationSubnets(), m.GetSniHosts(), t.l4Filter(o, r.GetRoute(), port.Port, defaultCluster))
			}
		}
		if !cb.matched {
			return []*listenerv3.FilterChain{def}
		}
		return cb.chains
	}
	for i, r := range vs.GetTcp() {
		name := fmt.Sprintf("%s.%s.tcp[%d]", o.Name, o.Namespace, i)
		if len(r.GetMatch()) == 0 {
			cb.add(name, nil, nil, t.l4Filter(o, r.GetRoute(), port.Port, defaultCluster))
			return cb.chains
		}
		var subnets []string
		terminal := false
		for _, m := range r.GetMatch() {
			if !t.l4MatchApplies(m.GetPort(), m.GetSourceLabels(), m.GetSourceNamespace(), m.GetGateways(), port.Port) {
				continue
			}
			if len(m.GetDestinationSubnets()) == 0 {
				terminal = true
				break
			}
			subnets = append(subnets, m.GetDestinationSubnets()...)
		}
		switch {
		case terminal:
			cb.add(name, nil, nil, t.l4Filter(o, r.GetRoute(), port.Port, defaultCluster))
			return cb.chains
		case len(subnets) > 0:
			cb.add(name, subnets, nil, t.l4Filter(o, r.GetRoute(), port.Port, defaultCluster))
		}
	}
	cb.add(defaultCluster, nil, nil, def.Filters[0])
	return cb.chains
}

// chainBuilder collects filter chains in order of precedence, leaving out
// of each what earlier chains already match.
type chainBuilder struct {
	chains []*listenerv3.FilterChain
	// taken holds "prefix|server name" pairs already matched ("" for
	// none).
	taken   map[string]bool
	matched bool
}

// add appends a chain for connections to subnets (any address when empty)
// with server names (any when empty), minus what is taken. What remains
// may not be a product of prefixes and names any more, so it becomes one
// chain per prefix, with that prefix's remaining names.
func (cb *chainBuilder) add(name string, subnets, names []string, filter *listenerv3.Filter) {
	if cb.taken == nil {
		cb.taken = map[string]bool{}
	}
	prefixes := []string{""}
	if len(subnets) > 0 {
		prefixes = prefixes[:0]
		seen := map[string]bool{}
		for _, s := range subnets {
			p, ok := parseSubnet(s)
			if !ok || seen[p.String()] {
				// The validator refuses what does not parse.
				continue
			}
			seen[p.String()] = true
			prefixes = append(prefixes, p.String())
		}
	}
	if len(names) == 0 {
		names = []string{""}
	}
	// One server name, one spelling: the proxy matches names in lower
	// case without a trailing dot, so "db.example.com." and
	// "db.example.com" would be two chains for one name (a listener it
	// refuses). The slice is the user's object's: copy before changing.
	names = slices.Clone(names)
	for i, n := range names {
		names[i] = strings.TrimSuffix(strings.ToLower(n), ".")
	}
	split := len(prefixes) > 1
	var whole []string // prefixes that kept all their names
	free := map[string][]string{}
	for _, p := range prefixes {
		for _, n := range names {
			if !cb.taken[p+"|"+n] {
				cb.taken[p+"|"+n] = true
				free[p] = append(free[p], n)
			}
		}
		if len(free[p]) == len(names) {
			whole = append(whole, p)
		}
	}
	emit := func(chainName string, ps []string, ns []string) {
		fc := &listenerv3.FilterChain{Name: chainName, Filters: []*listenerv3.Filter{filter}}
		m := &listenerv3.FilterChainMatch{}
		for _, p := range ps {
			if p != "" {
				pr := netip.MustParsePrefix(p)
				m.PrefixRanges = append(m.PrefixRanges, &corev3.CidrRange{AddressPrefix: pr.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(pr.Bits()))})
			}
		}
		for _, n := range ns {
			if n != "" {
				m.ServerNames = append(m.ServerNames, n)
			}
		}
		if len(m.PrefixRanges) > 0 || len(m.ServerNames) > 0 {
			fc.FilterChainMatch = m
		}
		cb.chains = append(cb.chains, fc)
	}
	// The common case, nothing taken: one chain as written.
	if len(whole) > 0 {
		emit(name, whole, names)
	}
	for _, p := range prefixes {
		if len(free[p]) == 0 || len(free[p]) == len(names) {
			continue
		}
		n := name
		if split {
			n += "/" + p
		}
		emit(n, []string{p}, free[p])
	}
}

// parseSubnet reads a destinationSubnets entry: a CIDR, or an address
// meaning just itself.
func parseSubnet(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), true
	}
	return netip.Prefix{}, false
}

// l4MatchApplies evaluates what a tcp or tls match says about the caller
// and the port, as Istio does when it builds a sidecar's listeners.
func (t *translation) l4MatchApplies(matchPort uint32, sourceLabels map[string]string, sourceNamespace string, gateways []string, port uint32) bool {
	if matchPort != 0 && matchPort != port {
		return false
	}
	if len(sourceLabels) > 0 && !labelsMatch(sourceLabels, t.proxy.Labels) {
		return false
	}
	if sourceNamespace != "" && sourceNamespace != t.proxy.Namespace {
		return false
	}
	if len(gateways) > 0 {
		for _, g := range gateways {
			if g == "mesh" {
				return true
			}
		}
		return false
	}
	return true
}

// l4Filter is the TCP proxy of a tcp or tls route: its destinations'
// clusters, weighted by Istio's rules (see normalizeWeights).
func (t *translation) l4Filter(o *config.Object, route []*networking.RouteDestination, port uint32, statPrefix string) *listenerv3.Filter {
	var dests []weighted
	for _, d := range route {
		dests = append(dests, weighted{cluster: t.destinationCluster(d.GetDestination(), o.Namespace, port), weight: uint32(max(d.GetWeight(), 0))})
	}
	dests = normalizeWeights(dests)
	// Istio's limits are those of the first destination's rule, even for
	// weighted clusters (connpool.go).
	limits := func(f *listenerv3.Filter) *listenerv3.Filter { return f }
	if len(route) > 0 {
		if target := t.w.Reg.Lookup(route[0].GetDestination().GetHost(), o.Namespace); target != nil {
			limits = func(f *listenerv3.Filter) *listenerv3.Filter {
				return t.tcpProxyLimits(f, target.Hostname, target.Namespace)
			}
		}
	}
	if len(dests) == 1 {
		return limits(tcpProxyFilter(dests[0].cluster, dests[0].cluster))
	}
	wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
	for _, d := range dests {
		wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.cluster, Weight: d.weight})
	}
	tp := &tcpproxyv3.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}}
	return limits(&listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}})
}

// l4SourceLabels reports whether some tcp or tls match looks at the
// caller's labels: then proxies that differ only in labels need their own
// translation (World.ScopeKey).
func l4SourceLabels(vs *networking.VirtualService) bool {
	for _, r := range vs.GetTcp() {
		for _, m := range r.GetMatch() {
			if len(m.GetSourceLabels()) > 0 {
				return true
			}
		}
	}
	for _, r := range vs.GetTls() {
		for _, m := range r.GetMatch() {
			if len(m.GetSourceLabels()) > 0 {
				return true
			}
		}
	}
	return false
}

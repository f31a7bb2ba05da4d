package xdsresource

import (
	"net/netip"
	"strconv"
	"strings"
)

// Type names (the tail of an Any's type URL) of the extensions the proxy
// implements.
const (
	hcmType       = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	tcpProxyType  = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	routerType    = "envoy.extensions.filters.http.router.v3.Router"
	routerName    = "envoy.filters.http.router"
	httpProtoType = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// DecodeListener decodes and validates an envoy.config.listener.v3.Listener.
func DecodeListener(b []byte) (*Listener, error) {
	l := &Listener{BindToPort: true}
	m := msg{b: b, varints: 1 << 16}
	hasAddress := false
	chains := 0
	for m.next() {
		switch m.num {
		case 1:
			l.Name = m.str("name")
		case 2:
			if ab, ok := m.bytes(); ok {
				hasAddress = true
				var err error
				l.Address, l.Port, err = socketAddress(ab)
				m.fail(err, "address")
			}
		case 3:
			if fb, ok := m.bytes(); ok {
				fc, err := decodeFilterChain(fb)
				m.failIndex(err, "filter_chains", chains)
				l.FilterChains = append(l.FilterChains, fc)
				chains++
			}
		case 4:
			l.UseOriginalDst = m.wrappedBool("use_original_dst")
		case 6:
			if mb, ok := m.bytes(); ok {
				m.fail(trellisMetadata(mb, func(k, v []byte) {
					if string(k) == "host" {
						l.Host = string(v)
					}
				}), "metadata")
			}
		case 16:
			d := m.enum()
			if d < int32(Unspecified) || d > int32(Outbound) {
				m.fail(errorf("unknown traffic direction %d", d), "traffic_direction")
			}
			l.Direction = Direction(d)
		case 19:
			// An api_listener is for proxyless clients; a sidecar has
			// nothing to serve it with.
			m.fail(errNotSupported, "api_listener")
		case 25:
			m.fail(errNotSupported, "default_filter_chain")
		case 26:
			l.BindToPort = m.wrappedBool("bind_to_port")
		case 32:
			m.fail(errNotSupported, "filter_chain_matcher")
		case 33:
			m.fail(errNotSupported, "additional_addresses")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if !hasAddress {
		return nil, within(errRequired, "address")
	}
	if err := checkChainTLS(l); err != nil {
		return nil, err
	}
	if err := distinctMatches(l.FilterChains); err != nil {
		return nil, err
	}
	return l, nil
}

// distinctMatches refuses two chains that would match the same connection
// alike, as Envoy does ("multiple filter chains with the same matching
// rules"): which one serves it would be arbitrary.
func distinctMatches(chains []FilterChain) error {
	if len(chains) < 2 {
		return nil
	}
	seen := map[string]int{}
	for i := range chains {
		fc := &chains[i]
		prefixes := []string{""}
		if len(fc.PrefixRanges) > 0 {
			prefixes = prefixes[:0]
			for _, p := range fc.PrefixRanges {
				prefixes = append(prefixes, p.String())
			}
		}
		names := fc.ServerNames
		if len(names) == 0 {
			names = []string{""}
		}
		port := strconv.FormatUint(uint64(fc.DestinationPort), 10)
		for _, p := range prefixes {
			for _, n := range names {
				key := port + "|" + p + "|" + n + "|" + fc.TransportProtocol + "|" + strings.Join(fc.ApplicationProtocols, ",")
				if j, ok := seen[key]; ok && j != i {
					return withinIndex(errorf("matches the same connections as filter_chains[%d] (destination port %s, prefix %q, server name %q)", j, port, p, n), "filter_chains", i)
				}
				seen[key] = i
			}
		}
	}
	return nil
}

// MatchesSNI reports whether some chain selects on the TLS server name, so
// that the proxy must read the ClientHello before choosing.
func (l *Listener) MatchesSNI() bool {
	for i := range l.FilterChains {
		if len(l.FilterChains[i].ServerNames) > 0 {
			return true
		}
	}
	return false
}

// ChainFor picks the chain for a connection to dst (its address may be
// unknown, i.e. invalid) whose ClientHello named sni ("" for none), the
// way Envoy does: criterion by criterion, destination port, then
// destination address (longest matching prefix), then server name (exact,
// then the longest matching wildcard), each narrowing the chains to the
// most specific that match, or else to those that leave the criterion
// empty. It never backtracks: a connection whose address picks a prefix
// group but whose server name no chain in that group accepts gets no chain
// (nil), and Envoy closes it.
func (l *Listener) ChainFor(dst netip.AddrPort, sni string) *FilterChain {
	chains := l.FilterChains
	port := uint32(dst.Port())
	wantPort := uint32(0)
	for i := range chains {
		if port != 0 && chains[i].DestinationPort == port {
			wantPort = port
			break
		}
	}
	addr := dst.Addr().Unmap()
	bestBits := -1
	for i := range chains {
		if chains[i].DestinationPort == wantPort {
			bestBits = max(bestBits, prefixBits(chains[i].PrefixRanges, addr))
		}
	}
	bestName := -1
	for i := range chains {
		fc := &chains[i]
		if fc.DestinationPort == wantPort && prefixGroup(fc.PrefixRanges, addr, bestBits) {
			bestName = max(bestName, nameScore(fc.ServerNames, sni))
		}
	}
	for i := range chains {
		fc := &chains[i]
		if fc.DestinationPort == wantPort && prefixGroup(fc.PrefixRanges, addr, bestBits) && nameGroup(fc.ServerNames, sni, bestName) {
			return fc
		}
	}
	return nil
}

// prefixBits is the length of the longest of ranges that holds addr, or
// -1 when none does.
func prefixBits(ranges []netip.Prefix, addr netip.Addr) int {
	best := -1
	if !addr.IsValid() {
		return best
	}
	for _, p := range ranges {
		if p.Contains(addr) {
			best = max(best, p.Bits())
		}
	}
	return best
}

// prefixGroup reports whether a chain with ranges is among the most
// specific for addr: it holds addr in a prefix of bestBits bits, or, when
// no chain's prefix holds addr (bestBits -1), it lists no prefix.
func prefixGroup(ranges []netip.Prefix, addr netip.Addr, bestBits int) bool {
	if bestBits < 0 {
		return len(ranges) == 0
	}
	for _, p := range ranges {
		if p.Bits() == bestBits && p.Contains(addr) {
			return true
		}
	}
	return false
}

// exactName outranks any wildcard, whose score is the length of the
// suffix it matches.
const exactName = 1 << 30

// nameScore is how specifically names match sni: exactName, the matched
// length of the longest matching "*.suffix", or -1 for no match.
func nameScore(names []string, sni string) int {
	best := -1
	if sni == "" {
		return best
	}
	for _, n := range names {
		switch {
		case n == sni:
			return exactName
		case strings.HasPrefix(n, "*.") && len(sni) > len(n)-1 && strings.HasSuffix(sni, n[1:]):
			best = max(best, len(n)-1)
		}
	}
	return best
}

func nameGroup(names []string, sni string, bestName int) bool {
	if bestName < 0 {
		return len(names) == 0
	}
	return nameScore(names, sni) == bestName
}

func decodeFilterChain(b []byte) (FilterChain, error) {
	var fc FilterChain
	var stats *Stats // an istio.stats network filter's, for the tcp_proxy after it
	m := msg{b: b}
	filters := 0
	for m.next() {
		switch m.num {
		case 1:
			if mb, ok := m.bytes(); ok {
				m.fail(decodeFilterChainMatch(mb, &fc), "filter_chain_match")
			}
		case 3:
			fb, ok := m.bytes()
			if !ok {
				break
			}
			m.failIndex(decodeFilter(fb, &fc, &stats), "filters", filters)
			filters++
		case 4:
			m.fail(errNotSupported, "use_proxy_proto")
		case 6:
			if sb, ok := m.bytes(); ok {
				var err error
				fc.TLS, err = decodeDownstreamSocket(sb)
				m.fail(err, "transport_socket")
			}
		case 7:
			fc.Name = m.str("name")
		}
	}
	if m.err != nil {
		return fc, m.err
	}
	if fc.HTTP == nil && fc.TCP == nil {
		return fc, within(errorf("needs an http_connection_manager or tcp_proxy filter"), "filters")
	}
	return fc, checkChainRBAC(&fc)
}

// decodeFilterChainMatch reads the destination port, destination prefix
// ranges and server names into fc; every other criterion would select
// connections the proxy cannot tell apart, so it is refused.
func decodeFilterChainMatch(b []byte, fc *FilterChain) error {
	m := msg{b: b, varints: 1 << 12}
	ranges, names := 0, 0
	for m.next() {
		switch m.num {
		case 8:
			fc.DestinationPort = m.wrappedUint32("destination_port")
		case 3:
			if rb, ok := m.bytes(); ok {
				p, err := decodeCIDR(rb)
				m.failIndex(err, "prefix_ranges", ranges)
				fc.PrefixRanges = append(fc.PrefixRanges, p)
				ranges++
			}
		case 4:
			m.fail(errNotSupported, "address_suffix")
		case 5:
			m.fail(errNotSupported, "suffix_len")
		case 6:
			m.fail(errNotSupported, "source_prefix_ranges")
		case 7:
			m.fail(errNotSupported, "source_ports")
		case 9:
			fc.TransportProtocol = m.str("transport_protocol")
			if p := fc.TransportProtocol; p != "tls" && p != "raw_buffer" {
				m.fail(errorf("%q: want tls or raw_buffer", p), "transport_protocol")
			}
		case 10:
			fc.ApplicationProtocols = append(fc.ApplicationProtocols, m.str("application_protocols"))
		case 11:
			seg := "server_names[" + strconv.Itoa(names) + "]"
			n := m.str(seg)
			if m.err == nil {
				n = strings.ToLower(strings.TrimSuffix(n, "."))
				m.fail(checkServerName(n), seg)
				fc.ServerNames = append(fc.ServerNames, n)
			}
			names++
		case 12:
			if m.enum() != 0 {
				m.fail(errNotSupported, "source_type")
			}
		case 13:
			m.fail(errNotSupported, "direct_source_prefix_ranges")
		}
	}
	return m.err
}

// checkServerName accepts what Envoy's server_names does: a name, or a
// leading "*." wildcard.
func checkServerName(n string) error {
	rest := strings.TrimPrefix(n, "*.")
	switch {
	case n == "":
		return errorf("must not be empty")
	case n == "*":
		return errorf(`"*" is not a server name: leave server_names empty to match any`)
	case strings.Contains(rest, "*"):
		return errorf("%q: a wildcard may only be a leading \"*.\"", n)
	}
	return nil
}

// decodeCIDR reads a config.core.v3.CidrRange; like Envoy, an unset
// prefix_len is 0 (every address of the family).
func decodeCIDR(b []byte) (netip.Prefix, error) {
	m := msg{b: b}
	var addr string
	var bits uint32
	for m.next() {
		switch m.num {
		case 1:
			addr = m.str("address_prefix")
		case 2:
			bits = m.wrappedUint32("prefix_len")
		}
	}
	if m.err != nil {
		return netip.Prefix{}, m.err
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, within(errorf("%q is not an IP address", addr), "address_prefix")
	}
	if int(bits) > a.BitLen() {
		return netip.Prefix{}, within(errorf("%d is longer than the %d bits of %s", bits, a.BitLen(), a), "prefix_len")
	}
	return netip.PrefixFrom(a, int(bits)).Masked(), nil
}

// decodeFilter decodes one network filter into fc. A chain ends in exactly
// one terminal filter, and the proxy has no non-terminal network filters.
func decodeFilter(b []byte, fc *FilterChain, stats **Stats) error {
	m := msg{b: b}
	var name string
	var typeName string
	var value []byte
	hasConfig := false
	for m.next() {
		switch m.num {
		case 1:
			name = m.str("name")
		case 4:
			ab, ok := m.bytes()
			if !ok {
				break
			}
			var err error
			typeName, value, err = anyValue(ab)
			m.fail(err, "typed_config")
			hasConfig = true
		case 5:
			m.fail(errNotSupported, "config_discovery")
		}
	}
	if m.err != nil {
		return m.err
	}
	if !hasConfig {
		return within(errorf("filter %q has no typed_config", name), "typed_config")
	}
	if fc.HTTP != nil || fc.TCP != nil {
		return errorf("filter %q follows the chain's terminal filter", name)
	}
	if s, ok, err := decodeStatsFilter(typeName, value); ok {
		if err != nil {
			return within(err, "typed_config")
		}
		*stats = s
		return nil
	}
	switch typeName {
	case networkRBACType:
		r, err := decodeNetworkRBAC(name, value)
		if err != nil {
			return within(err, "typed_config")
		}
		if r != nil {
			fc.RBAC = append(fc.RBAC, r)
		}
	case hcmType:
		if *stats != nil {
			return errorf("filter %q: an istio.stats network filter ahead of an HTTP connection manager: put it in its http_filters", name)
		}
		h, err := decodeHCM(value)
		if err != nil {
			return within(err, "typed_config")
		}
		fc.HTTP = h
	case tcpProxyType:
		t, err := decodeTCPProxy(value)
		if err != nil {
			return within(err, "typed_config")
		}
		t.Stats = *stats
		fc.TCP = t
	default:
		return within(errorf("filter %q: unsupported type %s", name, typeName), "typed_config")
	}
	return nil
}

func decodeHCM(b []byte) (*HTTPConnectionManager, error) {
	h := &HTTPConnectionManager{}
	m := msg{b: b, varints: 1<<33 | 1<<45}
	hasRoutes := false
	filters := 0
	router := false
	for m.next() {
		switch m.num {
		case 2:
			h.StatPrefix = m.str("stat_prefix")
		case 3:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			var err error
			h.RDSName, err = decodeRDS(rb)
			m.fail(err, "rds")
			h.RouteConfig, hasRoutes = nil, true
		case 4:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			rc, err := DecodeRouteConfig(rb)
			m.fail(err, "route_config")
			h.RouteConfig, h.RDSName, hasRoutes = rc, "", true
		case 5:
			fb, ok := m.bytes()
			if !ok {
				break
			}
			m.failIndex(decodeHTTPFilter(fb, h, &router), "http_filters", filters)
			filters++
		case 7:
			if tb, ok := m.bytes(); ok {
				var err error
				h.Tracing, err = decodeTracing(tb)
				m.fail(err, "tracing")
			}
		case 13:
			if ab, ok := m.bytes(); ok {
				al, err := decodeAccessLog(ab)
				m.failIndex(err, "access_log", len(h.AccessLogs))
				h.AccessLogs = append(h.AccessLogs, al)
			}
		case 30:
			h.Paths.Normalize = m.wrappedBool("normalize_path")
		case 33:
			h.Paths.MergeSlashes = m.bool()
		case 45:
			a, err := decodeEscapedSlashesAction(m.enum())
			m.fail(err, "path_with_escaped_slashes_action")
			h.Paths.EscapedSlashes = a
		case 43:
			// Separate transformations for filters and upstream would
			// judge one spelling and serve another.
			if len(m.val) > 0 {
				m.fail(errNotSupported, "path_normalization_options")
			}
		case 31:
			m.fail(errNotSupported, "scoped_routes")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if !hasRoutes {
		return nil, errorf("needs rds or route_config")
	}
	return h, nil
}

func decodeRDS(b []byte) (string, error) {
	var name string
	m := msg{b: b}
	for m.next() {
		if m.num == 2 {
			name = m.str("route_config_name")
		}
	}
	if m.err == nil && name == "" {
		return "", within(errRequired, "route_config_name")
	}
	return name, m.err
}

// decodeHTTPFilter accepts the router, which the proxy's HTTP path is,
// and RBAC ahead of it (rbac.go), which it appends to h.
// Any other filter would change requests in ways the proxy does not
// implement, unless it is optional or disabled, which Envoy too skips.
func decodeHTTPFilter(b []byte, h *HTTPConnectionManager, router *bool) error {
	m := msg{b: b, varints: 1<<6 | 1<<7}
	var name, typeName string
	var value []byte
	optional, disabled := false, false
	for m.next() {
		switch m.num {
		case 1:
			name = m.str("name")
		case 4:
			ab, ok := m.bytes()
			if !ok {
				break
			}
			var err error
			typeName, value, err = anyValue(ab)
			m.fail(err, "typed_config")
		case 5:
			m.fail(errNotSupported, "config_discovery")
		case 6:
			optional = m.bool()
		case 7:
			disabled = m.bool()
		}
	}
	switch {
	case m.err != nil:
		return m.err
	case typeName == routerType, typeName == "" && name == routerName:
		*router = true
		return nil
	case typeName == httpRBACType && !disabled:
		return addHTTPRBAC(h, name, value, *router)
	case typeName == extAuthzType && !disabled:
		return addExtAuthz(h, name, value, *router)
	case typeName == jwtType && !disabled:
		return decodeJWTFilter(value, h, *router)
	case typeName == faultType && !disabled:
		return decodeFaultFilter(value)
	case typeName == corsFilterType && !disabled:
		return decodeCORSFilter(value) // cors.go
	case !disabled && (typeName == typedStructType || typeName == udpaTypedStruct):
		s, ok, err := decodeStatsFilter(typeName, value) // telemetry.go
		if ok {
			if err != nil {
				return within(err, "typed_config")
			}
			if *router {
				return errorf("HTTP filter %q follows the router", name)
			}
			h.Stats = s
			return nil
		}
		if optional {
			return nil
		}
	case optional || disabled:
		return nil
	}
	if typeName == "" {
		return errorf("HTTP filter %q is not supported by trellis-proxy", name)
	}
	return errorf("HTTP filter %q (%s) is not supported by trellis-proxy", name, typeName)
}

func decodeTCPProxy(b []byte) (*TCPProxy, error) {
	t := &TCPProxy{}
	m := msg{b: b}
	weighted := false
	for m.next() {
		switch m.num {
		case 1:
			t.StatPrefix = m.str("stat_prefix")
		case 2:
			// cluster and weighted_clusters are a oneof: the last wins.
			t.Cluster = m.str("cluster")
			t.WeightedClusters, t.TotalWeight, weighted = nil, 0, false
		case 10:
			if wb, ok := m.bytes(); ok {
				var err error
				t.WeightedClusters, t.TotalWeight, err = decodeTCPWeightedClusters(wb)
				m.fail(err, "weighted_clusters")
				t.Cluster, weighted = "", true
			}
		case 8:
			t.IdleTimeout = m.duration("idle_timeout")
			t.NoIdleTimeout = t.IdleTimeout == 0
		case 13:
			t.MaxConnectionDuration = m.duration("max_downstream_connection_duration")
		case 5:
			if ab, ok := m.bytes(); ok {
				al, err := decodeAccessLog(ab)
				m.failIndex(err, "access_log", len(t.AccessLogs))
				t.AccessLogs = append(t.AccessLogs, al)
			}
		case 12:
			m.fail(errNotSupported, "tunneling_config")
		case 9:
			m.fail(errNotSupported, "metadata_match")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if t.Cluster == "" && !weighted {
		return nil, within(errRequired, "cluster")
	}
	return t, nil
}

// decodeTCPWeightedClusters reads a TcpProxy.WeightedCluster: at least
// one named cluster, each weighing at least 1, as Envoy validates.
func decodeTCPWeightedClusters(b []byte) ([]ClusterWeight, uint64, error) {
	var out []ClusterWeight
	var total uint64
	m := msg{b: b}
	for m.next() {
		if m.num != 1 {
			continue
		}
		cb, ok := m.bytes()
		if !ok {
			continue
		}
		cw, err := decodeTCPClusterWeight(cb)
		m.failIndex(err, "clusters", len(out))
		out = append(out, cw)
		total += uint64(cw.Weight)
	}
	if m.err != nil {
		return nil, 0, m.err
	}
	if len(out) == 0 {
		return nil, 0, within(errRequired, "clusters")
	}
	return out, total, nil
}

func decodeTCPClusterWeight(b []byte) (ClusterWeight, error) {
	var cw ClusterWeight
	m := msg{b: b, varints: 1 << 2}
	for m.next() {
		switch m.num {
		case 1:
			cw.Name = m.str("name")
		case 2:
			cw.Weight = m.uint32()
		case 3:
			m.fail(errNotSupported, "metadata_match")
		}
	}
	switch {
	case m.err != nil:
		return cw, m.err
	case cw.Name == "":
		return cw, within(errRequired, "name")
	case cw.Weight == 0:
		return cw, within(errorf("must be >= 1"), "weight")
	}
	return cw, nil
}

package xdsresource

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
	return l, nil
}

func decodeFilterChain(b []byte) (FilterChain, error) {
	var fc FilterChain
	m := msg{b: b}
	filters := 0
	for m.next() {
		switch m.num {
		case 1:
			if mb, ok := m.bytes(); ok {
				var err error
				fc.DestinationPort, err = decodeFilterChainMatch(mb)
				m.fail(err, "filter_chain_match")
			}
		case 3:
			fb, ok := m.bytes()
			if !ok {
				break
			}
			m.failIndex(decodeFilter(fb, &fc), "filters", filters)
			filters++
		case 4:
			m.fail(errNotSupported, "use_proxy_proto")
		case 6:
			// Serving plaintext where TLS was asked for would be worse
			// than refusing the chain.
			m.fail(errNotSupported, "transport_socket")
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
	return fc, nil
}

// decodeFilterChainMatch reads the destination port; every other criterion
// would select connections the proxy cannot tell apart, so it is refused.
func decodeFilterChainMatch(b []byte) (uint32, error) {
	var port uint32
	m := msg{b: b, varints: 1 << 12}
	for m.next() {
		switch m.num {
		case 8:
			port = m.wrappedUint32("destination_port")
		case 3:
			m.fail(errNotSupported, "prefix_ranges")
		case 4:
			m.fail(errNotSupported, "address_suffix")
		case 5:
			m.fail(errNotSupported, "suffix_len")
		case 6:
			m.fail(errNotSupported, "source_prefix_ranges")
		case 7:
			m.fail(errNotSupported, "source_ports")
		case 9:
			m.fail(errNotSupported, "transport_protocol")
		case 10:
			m.fail(errNotSupported, "application_protocols")
		case 11:
			m.fail(errNotSupported, "server_names")
		case 12:
			if m.enum() != 0 {
				m.fail(errNotSupported, "source_type")
			}
		case 13:
			m.fail(errNotSupported, "direct_source_prefix_ranges")
		}
	}
	return port, m.err
}

// decodeFilter decodes one network filter into fc. A chain ends in exactly
// one terminal filter, and the proxy has no non-terminal network filters.
func decodeFilter(b []byte, fc *FilterChain) error {
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
	switch typeName {
	case hcmType:
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
		fc.TCP = t
	default:
		return within(errorf("filter %q: unsupported type %s", name, typeName), "typed_config")
	}
	return nil
}

func decodeHCM(b []byte) (*HTTPConnectionManager, error) {
	h := &HTTPConnectionManager{}
	m := msg{b: b}
	hasRoutes := false
	filters := 0
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
			m.failIndex(decodeHTTPFilter(fb), "http_filters", filters)
			filters++
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

// decodeHTTPFilter accepts the router, which the proxy's HTTP path is.
// Any other filter would change requests in ways the proxy does not
// implement, unless it is optional or disabled, which Envoy too skips.
func decodeHTTPFilter(b []byte) error {
	m := msg{b: b, varints: 1<<6 | 1<<7}
	var name, typeName string
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
			typeName, _, err = anyValue(ab)
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
		return nil
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
	for m.next() {
		switch m.num {
		case 1:
			t.StatPrefix = m.str("stat_prefix")
		case 2:
			t.Cluster = m.str("cluster")
		case 10:
			m.fail(errNotSupported, "weighted_clusters")
		case 12:
			m.fail(errNotSupported, "tunneling_config")
		case 9:
			m.fail(errNotSupported, "metadata_match")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if t.Cluster == "" {
		return nil, within(errRequired, "cluster")
	}
	return t, nil
}

package xdsresource

import "time"

// defaultConnectTimeout is Envoy's when a cluster sets none.
const defaultConnectTimeout = 5 * time.Second

// Envoy's Cluster.DiscoveryType and Cluster.LbPolicy numbers, mapped to
// the proxy's; -1 marks numbers Envoy has retired or the proxy lacks.
var (
	discoveryTypes = [...]Discovery{0: ClusterStatic, 1: ClusterStrictDNS, 2: ClusterLogicalDNS, 3: ClusterEDS, 4: ClusterOriginalDst}
	lbPolicies     = [...]LBPolicy{0: LBRoundRobin, 1: LBLeastRequest, 2: LBRingHash, 3: LBRandom, 4: -1, 5: LBMaglev, 6: LBClusterProvided}
)

// lbPeakEWMA is the value of a cluster's filter_metadata.trellis.lb that
// turns on the peak-EWMA refinement of LEAST_REQUEST; no other value is
// defined, and an unknown one is rejected rather than silently balanced
// some other way.
const lbPeakEWMA = "PEAK_EWMA"

// DecodeCluster decodes and validates an envoy.config.cluster.v3.Cluster.
func DecodeCluster(b []byte) (*Cluster, error) {
	c := &Cluster{Type: ClusterStatic, LBPolicy: LBRoundRobin, ConnectTimeout: defaultConnectTimeout}
	m := msg{b: b, varints: 1<<2 | 1<<6}
	for m.next() {
		switch m.num {
		case 1:
			c.Name = m.str("name")
		case 2:
			t := m.enum()
			if t < 0 || int(t) >= len(discoveryTypes) {
				m.fail(errorf("unknown cluster type %d", t), "type")
				break
			}
			c.Type = discoveryTypes[t]
		case 38:
			m.fail(errNotSupported, "cluster_type")
		case 4:
			c.ConnectTimeout = m.duration("connect_timeout")
		case 6:
			p := m.enum()
			if p < 0 || int(p) >= len(lbPolicies) || lbPolicies[p] < 0 {
				m.fail(errorf("unknown or unsupported load balancing policy %d", p), "lb_policy")
				break
			}
			c.LBPolicy = lbPolicies[p]
		case 41:
			m.fail(errNotSupported, "load_balancing_policy")
		case 22:
			m.fail(errNotSupported, "lb_subset_config")
		case 23:
			rb, ok := m.bytes()
			if !ok {
				break
			}
			r := msg{b: rb}
			for r.next() {
				if r.num == 1 {
					c.RingMinSize = r.wrapped("minimum_ring_size")
				}
			}
			m.fail(r.err, "ring_hash_lb_config")
		case 52:
			mb, ok := m.bytes()
			if !ok {
				break
			}
			r := msg{b: mb}
			for r.next() {
				if r.num == 1 {
					c.MaglevTableSize = r.wrapped("table_size")
				}
			}
			m.fail(r.err, "maglev_lb_config")
		case 9:
			c.MaxRequestsPerConnection = m.wrappedUint32("max_requests_per_connection")
		case 10:
			cb, ok := m.bytes()
			if !ok {
				break
			}
			var err error
			c.CircuitBreakers, err = decodeCircuitBreakers(cb)
			m.fail(err, "circuit_breakers")
		case 14:
			// The deprecated cluster-level form of explicit HTTP/2.
			c.HTTP2 = true
		case 29:
			pb, ok := m.bytes()
			if ok {
				m.fail(decodeCommonHTTPOptions(pb, c), "common_http_protocol_options")
			}
		case 30:
			if ob, ok := m.bytes(); ok {
				m.fail(decodeUpstreamConnectionOptions(ob, c), "upstream_connection_options")
			}
		case 36:
			eb, ok := m.bytes()
			if !ok {
				break
			}
			key, value, err := mapEntry(eb)
			if err != nil {
				m.fail(err, "typed_extension_protocol_options")
				break
			}
			if string(key) != httpProtoType {
				break // options for extensions the proxy does not have
			}
			m.fail(decodeHTTPProtocolOptions(value, c), `typed_extension_protocol_options["`+httpProtoType+`"]`)
		case 33:
			lb, ok := m.bytes()
			if !ok {
				break
			}
			cla, err := DecodeClusterLoadAssignment(lb)
			m.fail(err, "load_assignment")
			c.LoadAssignment = cla
		case 25:
			mb, ok := m.bytes()
			if !ok {
				break
			}
			var lbErr error
			err := trellisMetadata(mb, func(k, v []byte) {
				if string(k) != "lb" || lbErr != nil {
					return
				}
				switch string(v) {
				case lbPeakEWMA:
					c.PeakEWMA = true
				default:
					lbErr = within(errorf("unknown load balancer %q: want %s", v, lbPeakEWMA), `filter_metadata["trellis"].fields["lb"]`)
				}
			})
			if err == nil {
				err = lbErr
			}
			m.fail(err, "metadata")
		case 24:
			if sb, ok := m.bytes(); ok {
				var err error
				c.TLS, err = decodeUpstreamSocket(sb)
				m.fail(err, "transport_socket")
			}
		case 43:
			if sb, ok := m.bytes(); ok {
				tm, err := decodeSocketMatch(sb)
				m.failIndex(err, "transport_socket_matches", len(c.TLSMatches))
				c.TLSMatches = append(c.TLSMatches, tm)
			}
		case 19:
			if ob, ok := m.bytes(); ok {
				var err error
				c.Outlier, err = decodeOutlierDetection(ob)
				m.fail(err, "outlier_detection")
			}
		case 27:
			if lb, ok := m.bytes(); ok {
				m.fail(decodeCommonLB(lb, c), "common_lb_config")
				m.fail(decodeLocalityLBConfig(lb, c), "common_lb_config") // lbconfig.go
			}
		case 56, 37: // round_robin_lb_config, least_request_lb_config
			m.fail(decodePolicyLBConfig(m.num, m.val, c), policyLBConfigName(m.num)) // lbconfig.go
		case 59:
			m.fail(errNotSupported, "transport_socket_matcher")
		case 48:
			m.fail(errNotSupported, "upstream_config")
		case 40:
			m.fail(errNotSupported, "filters")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	if c.PeakEWMA && c.LBPolicy != LBLeastRequest {
		return nil, within(errorf("%s needs lb_policy LEAST_REQUEST", lbPeakEWMA), `metadata.filter_metadata["trellis"].fields["lb"]`)
	}
	switch c.Type {
	case ClusterOriginalDst:
		if c.LBPolicy != LBClusterProvided {
			return nil, within(errorf("ORIGINAL_DST clusters need CLUSTER_PROVIDED"), "lb_policy")
		}
	case ClusterStatic, ClusterStrictDNS, ClusterLogicalDNS:
		if c.LBPolicy == LBClusterProvided {
			return nil, within(errorf("CLUSTER_PROVIDED is only for ORIGINAL_DST clusters"), "lb_policy")
		}
	case ClusterEDS:
		if c.LBPolicy == LBClusterProvided {
			return nil, within(errorf("CLUSTER_PROVIDED is only for ORIGINAL_DST clusters"), "lb_policy")
		}
		if c.LoadAssignment != nil {
			// Envoy ignores it for EDS; keeping it would suggest otherwise.
			c.LoadAssignment = nil
		}
	}
	return c, nil
}

// decodeCircuitBreakers keeps the thresholds of the DEFAULT priority: the
// proxy has no request priorities.
func decodeCircuitBreakers(b []byte) (CircuitBreakers, error) {
	var out CircuitBreakers
	m := msg{b: b}
	i := 0
	for m.next() {
		if m.num != 1 {
			continue
		}
		tb, ok := m.bytes()
		if !ok {
			break
		}
		var cb CircuitBreakers
		high := false
		t := msg{b: tb, varints: 1 << 1}
		for t.next() {
			switch t.num {
			case 1:
				high = t.enum() != 0
			case 2:
				cb.MaxConnections = t.wrappedUint32("max_connections")
			case 3:
				cb.MaxPendingRequests = t.wrappedUint32("max_pending_requests")
			case 4:
				cb.MaxRequests = t.wrappedUint32("max_requests")
			case 5:
				cb.MaxRetries = t.wrappedUint32("max_retries")
			case 8:
				bb, _ := t.bytes()
				rb, err := decodeRetryBudget(bb)
				t.fail(err, "retry_budget")
				cb.RetryBudget = rb
			}
		}
		m.failIndex(t.err, "thresholds", i)
		i++
		if !high {
			out = cb
		}
	}
	return out, m.err
}

func decodeCommonHTTPOptions(b []byte, c *Cluster) error {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			c.IdleTimeout = m.duration("idle_timeout")
		case 3:
			c.MaxConnectionDuration = m.duration("max_connection_duration")
		case 4:
			m.fail(errNotSupported, "max_stream_duration")
		case 6:
			c.MaxRequestsPerConnection = m.wrappedUint32("max_requests_per_connection")
		}
	}
	return m.err
}

// decodeHTTPProtocolOptions reads an Any holding
// envoy.extensions.upstreams.http.v3.HttpProtocolOptions.
func decodeHTTPProtocolOptions(b []byte, c *Cluster) error {
	typeName, value, err := anyValue(b)
	if err != nil {
		return err
	}
	if typeName != httpProtoType {
		return within(errorf("unexpected type %s", typeName), "type_url")
	}
	m := msg{b: value}
	for m.next() {
		switch m.num {
		case 1:
			pb, ok := m.bytes()
			if ok {
				m.fail(decodeCommonHTTPOptions(pb, c), "common_http_protocol_options")
			}
		case 3:
			eb, ok := m.bytes()
			if !ok {
				break
			}
			e := msg{b: eb}
			for e.next() {
				switch e.num {
				case 1:
					c.HTTP2 = false
				case 2:
					c.HTTP2 = true
					if hb, ok := e.bytes(); ok {
						e.fail(decodeHTTP2Options(hb, c), "http2_protocol_options")
					}
				case 3:
					e.fail(errNotSupported, "http3_protocol_options")
				}
			}
			m.fail(e.err, "explicit_http_config")
		case 4:
			c.HTTP2, c.DownstreamProtocol = false, true
			if db, ok := m.bytes(); ok {
				m.fail(decodeDownstreamHTTPConfig(db, c), "use_downstream_protocol_config")
			}
		case 5:
			// ALPN-negotiated protocols need upstream TLS, which the
			// proxy does not have yet.
			m.fail(errNotSupported, "auto_config")
		case 6:
			m.fail(errNotSupported, "http_filters")
		}
	}
	if m.err != nil {
		return within(m.err, "value")
	}
	return nil
}

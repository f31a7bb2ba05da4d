package xdsresource

// DecodeClusterLoadAssignment decodes and validates an
// envoy.config.endpoint.v3.ClusterLoadAssignment. It runs on every
// endpoint change of every cluster, so repeated fields are sized up front.
func DecodeClusterLoadAssignment(b []byte) (*ClusterLoadAssignment, error) {
	cla := &ClusterLoadAssignment{}
	m := msg{b: b}
	if n := count(b, 2); n > 0 {
		cla.Localities = make([]LocalityEndpoints, 0, n)
	}
	for m.next() {
		switch m.num {
		case 1:
			cla.ClusterName = m.str("cluster_name")
		case 2:
			lb, ok := m.bytes()
			if !ok {
				break
			}
			cla.Localities = append(cla.Localities, LocalityEndpoints{})
			m.failIndex(decodeLocality(lb, &cla.Localities[len(cla.Localities)-1]), "endpoints", len(cla.Localities)-1)
		case 5:
			m.fail(errNotSupported, "named_endpoints")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	return cla, nil
}

func decodeLocality(b []byte, l *LocalityEndpoints) error {
	m := msg{b: b, varints: 1 << 5}
	if n := count(b, 2); n > 0 {
		l.Endpoints = make([]Endpoint, 0, n)
	}
	for m.next() {
		switch m.num {
		case 1:
			lb, ok := m.bytes()
			if !ok {
				break
			}
			loc := msg{b: lb}
			for loc.next() {
				switch loc.num {
				case 1:
					l.Region = loc.str("region")
				case 2:
					l.Zone = loc.str("zone")
				case 3:
					l.SubZone = loc.str("sub_zone")
				}
			}
			m.fail(loc.err, "locality")
		case 2:
			eb, ok := m.bytes()
			if !ok {
				break
			}
			var prev *Endpoint
			if n := len(l.Endpoints); n > 0 {
				prev = &l.Endpoints[n-1]
			}
			l.Endpoints = append(l.Endpoints, Endpoint{})
			m.failIndex(decodeLbEndpoint(eb, &l.Endpoints[len(l.Endpoints)-1], prev), "lb_endpoints", len(l.Endpoints)-1)
		case 3:
			l.Weight = m.wrappedUint32("load_balancing_weight")
		case 5:
			l.Priority = m.uint32()
		case 7:
			m.fail(errNotSupported, "load_balancer_endpoints")
		case 8:
			m.fail(errNotSupported, "leds_cluster_locality_config")
		}
	}
	return m.err
}

// Envoy's core.v3.HealthStatus values.
const (
	healthUnknown  = 0
	healthHealthy  = 1
	healthDegraded = 5
)

// decodeLbEndpoint decodes into e. The endpoints of one service mostly
// share a namespace, service account and tlsMode, so strings equal to
// prev's are shared rather than allocated again. Only the trellis
// filter_metadata is read; others (envoy.transport_socket_match, which
// repeats tlsMode for Envoy) are accepted and ignored.
func decodeLbEndpoint(b []byte, e, prev *Endpoint) error {
	m := msg{b: b, varints: 1 << 2}
	e.Weight, e.Healthy, e.Degraded = 1, true, false
	hasEndpoint := false
	for m.next() {
		switch m.num {
		case 1:
			eb, ok := m.bytes()
			if !ok {
				break
			}
			hasEndpoint = true
			ep := msg{b: eb}
			hasAddress := false
			for ep.next() {
				if ep.num == 1 {
					ab, ok := ep.bytes()
					if !ok {
						break
					}
					hasAddress = true
					var err error
					e.Address, e.Port, err = socketAddress(ab)
					ep.fail(err, "address")
				}
			}
			if ep.err == nil && !hasAddress {
				ep.err = within(errRequired, "address")
			}
			m.fail(ep.err, "endpoint")
		case 5:
			m.fail(errNotSupported, "endpoint_name")
		case 2:
			s := m.enum()
			if s < healthUnknown || s > healthDegraded {
				m.fail(errorf("unknown health status %d", s), "health_status")
			}
			e.Healthy = s == healthUnknown || s == healthHealthy
			e.Degraded = s == healthDegraded
		case 3:
			mb, ok := m.bytes()
			if !ok {
				break
			}
			m.fail(trellisMetadata(mb, func(k, v []byte) {
				switch string(k) {
				case "workload":
					e.Workload = string(v)
				case "namespace":
					e.Namespace = reuse(v, prev, func(p *Endpoint) string { return p.Namespace })
				case "serviceAccount":
					e.ServiceAccount = reuse(v, prev, func(p *Endpoint) string { return p.ServiceAccount })
				case "peer":
					e.Peer = reuse(v, prev, func(p *Endpoint) string { return p.Peer })
				case "tlsMode":
					e.TLSMode = reuse(v, prev, func(p *Endpoint) string { return p.TLSMode })
				case "proxyless":
					e.Proxyless = string(v) == "true"
				}
			}), "metadata")
		case 4:
			e.Weight = m.wrappedUint32("load_balancing_weight")
			if e.Weight == 0 {
				m.fail(errorf("must be >= 1"), "load_balancing_weight")
			}
		}
	}
	if m.err != nil {
		return m.err
	}
	if !hasEndpoint {
		return within(errRequired, "endpoint")
	}
	return nil
}

func reuse(v []byte, prev *Endpoint, field func(*Endpoint) string) string {
	if prev != nil {
		if s := field(prev); s == string(v) {
			return s
		}
	}
	return string(v)
}

package xdsresource

// MirrorPolicy is one of a route's request_mirror_policies: a copy of
// each request, drawn with Percent, goes to Cluster and its answer is
// dropped (Envoy's shadowing, Istio's mirror and mirrors).
type MirrorPolicy struct {
	Cluster string
	Percent PerMillion
}

// decodeMirrorPolicy reads a RouteAction.RequestMirrorPolicy as istiod
// writes it: a cluster and runtime_fraction's default value (without
// one, every request, as in Envoy). trace_sampled only says whether the
// copy's trace is sampled, which a proxy without tracing has no use for.
// A cluster named by a header, a host left without "-shadow" and header
// mutations for the copy are refused: the copy would not be what Envoy
// sends.
func decodeMirrorPolicy(b []byte) (MirrorPolicy, error) {
	p := MirrorPolicy{Percent: Million}
	m := msg{b: b, varints: 1 << 6}
	for m.next() {
		switch m.num {
		case 1:
			p.Cluster = m.str("cluster")
		case 3:
			rb, _ := m.bytes()
			pct, err := decodeRuntimeFraction(rb)
			m.fail(err, "runtime_fraction")
			p.Percent = pct
		case 5:
			m.fail(errNotSupported, "cluster_header")
		case 6:
			if m.bool() {
				m.fail(errNotSupported, "disable_shadow_host_suffix_append")
			}
		case 7:
			m.fail(errNotSupported, "request_headers_mutations")
		}
	}
	if m.err != nil {
		return p, m.err
	}
	if p.Cluster == "" {
		return p, within(errRequired, "cluster")
	}
	return p, nil
}

// decodeRuntimeFraction reads a core.v3.RuntimeFractionalPercent's
// default value; the runtime key names an override in a runtime the
// proxy does not have, so the default is what applies, as in an Envoy
// whose runtime lacks the key. Envoy requires the default value.
func decodeRuntimeFraction(b []byte) (PerMillion, error) {
	var pct PerMillion
	set := false
	m := msg{b: b}
	for m.next() {
		if m.num == 1 {
			fb, _ := m.bytes()
			p, err := decodeFractionalPercent(fb)
			m.fail(err, "default_value")
			pct, set = p, true
		}
	}
	if m.err == nil && !set {
		return 0, within(errRequired, "default_value")
	}
	return pct, m.err
}

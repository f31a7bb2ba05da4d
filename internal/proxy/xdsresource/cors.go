package xdsresource

// Envoy's CORS filter, as istiod sends it: the filter itself, empty,
// among an outbound connection manager's http_filters, and each route's
// policy in its typed_per_filter_config under the filter's name.
const (
	corsFilterType = "envoy.extensions.filters.http.cors.v3.Cors"
	corsPolicyType = "envoy.extensions.filters.http.cors.v3.CorsPolicy"
	// CORSFilterName is the key of a route's CORS policy in
	// typed_per_filter_config.
	CORSFilterName = "envoy.filters.http.cors"
)

// CORSPolicy is a route's CORS policy (Envoy's cors.v3.CorsPolicy). The
// header values are sent as written; "*" in AllowMethods or
// AllowHeaders echoes the preflight's request, as Envoy does.
type CORSPolicy struct {
	AllowOrigins  []StringMatcher
	AllowMethods  string
	AllowHeaders  string
	ExposeHeaders string
	MaxAge        string
	// AllowCredentials and AllowPrivateNetwork send their header "true".
	AllowCredentials    bool
	AllowPrivateNetwork bool
	// Enabled is filter_enabled's share of requests (all without it).
	Enabled PerMillion
	// ForwardUnmatched sends a preflight whose origin is not allowed on
	// to the app (forward_not_matching_preflights, Envoy's default);
	// without it the proxy answers such a preflight itself, without
	// Access-Control-Allow-Origin.
	ForwardUnmatched bool
}

// decodeCORSPolicy reads a cors.v3.CorsPolicy. shadow_enabled, which only
// counts what the filter would do, is refused when it is on for any
// request: the proxy keeps no such counters.
func decodeCORSPolicy(b []byte) (*CORSPolicy, error) {
	c := &CORSPolicy{Enabled: Million, ForwardUnmatched: true}
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			sb, _ := m.bytes()
			sm, err := decodeStringMatcher(sb)
			m.failIndex(err, "allow_origin_string_match", len(c.AllowOrigins))
			c.AllowOrigins = append(c.AllowOrigins, sm)
		case 2:
			c.AllowMethods = m.str("allow_methods")
		case 3:
			c.AllowHeaders = m.str("allow_headers")
		case 4:
			c.ExposeHeaders = m.str("expose_headers")
		case 5:
			c.MaxAge = m.str("max_age")
		case 6:
			c.AllowCredentials = m.wrappedBool("allow_credentials")
		case 7:
			fb, _ := m.bytes()
			p, err := decodeRuntimeFraction(fb)
			m.fail(err, "filter_enabled")
			c.Enabled = p
		case 8:
			fb, _ := m.bytes()
			p, err := decodeRuntimeFraction(fb)
			m.fail(err, "shadow_enabled")
			if p > 0 {
				m.fail(errNotSupported, "shadow_enabled")
			}
		case 9:
			c.AllowPrivateNetwork = m.wrappedBool("allow_private_network_access")
		case 10:
			c.ForwardUnmatched = m.wrappedBool("forward_not_matching_preflights")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	return c, nil
}

// decodeCORSFilter accepts the CORS filter among http_filters: Envoy's
// Cors message has no fields, the routes' policies are the config.
func decodeCORSFilter(value []byte) error {
	m := msg{b: value}
	for m.next() {
	}
	return m.err
}

// decodeRouteFilterConfig reads one entry of a route's
// typed_per_filter_config: the CORS filter's policy here, the others as
// decodePerFilterConfig reads them.
func decodeRouteFilterConfig(b []byte, r *Route) error {
	key, value, err := mapEntry(b)
	if err != nil {
		return err
	}
	if string(key) != CORSFilterName {
		return decodePerFilterConfig(b, r)
	}
	seg := "[" + string(key) + "]"
	typeName, v, err := anyValue(value)
	if err != nil {
		return within(err, seg)
	}
	if typeName != corsPolicyType {
		return within(errorf("type %s is not the CORS filter's %s", typeName, corsPolicyType), seg)
	}
	c, err := decodeCORSPolicy(v)
	if err != nil {
		return within(err, seg)
	}
	r.CORS = c
	return nil
}

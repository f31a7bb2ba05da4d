package xdsresource

import "time"

// Envoy's fault injection filter, as istiod sends it: the filter itself,
// empty, among the connection manager's http_filters, and each route's
// delay and abort in its typed_per_filter_config under the filter's name.
const (
	faultType = "envoy.extensions.filters.http.fault.v3.HTTPFault"
	// FaultFilterName is the key of a route's fault in
	// typed_per_filter_config.
	FaultFilterName = "envoy.filters.http.fault"
)

// PerMillion is a share of requests in millionths, the finest
// FractionalPercent denominator, so every denominator compares alike.
type PerMillion uint32

// Million is all requests.
const Million PerMillion = 1_000_000

// Fault is a route's fault injection (Envoy's HTTPFault). Delay and Abort
// are independent draws, as in Envoy: a request may be delayed, then
// aborted.
type Fault struct {
	Delay *FaultDelay
	Abort *FaultAbort
}

// FaultDelay holds a request for Fixed before it goes on.
type FaultDelay struct {
	Fixed   time.Duration
	Percent PerMillion
}

// FaultAbort answers a request itself: HTTPStatus, or for GRPC a
// trailers-only answer with GRPCStatus.
type FaultAbort struct {
	HTTPStatus int
	GRPC       bool
	GRPCStatus int
	Percent    PerMillion
}

// decodeFault reads an HTTPFault. Anything beyond a fixed delay, a fixed
// abort and their shares (header-driven faults, cluster, header or node
// conditions, active-fault limits, rate limits) is refused rather than
// silently not injected. The runtime keys only name overrides of a
// runtime the proxy does not have, so Envoy's defaults apply as there.
func decodeFault(b []byte) (*Fault, error) {
	f := &Fault{}
	m := msg{b: b, varints: 1 << 15}
	for m.next() {
		switch m.num {
		case 1:
			db, _ := m.bytes()
			d, err := decodeFaultDelay(db)
			m.fail(err, "delay")
			f.Delay = d
		case 2:
			ab, _ := m.bytes()
			a, err := decodeFaultAbort(ab)
			m.fail(err, "abort")
			f.Abort = a
		case 3:
			m.fail(errNotSupported, "upstream_cluster")
		case 4:
			m.fail(errNotSupported, "headers")
		case 5:
			m.fail(errNotSupported, "downstream_nodes")
		case 6:
			m.fail(errNotSupported, "max_active_faults")
		case 7:
			m.fail(errNotSupported, "response_rate_limit")
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	return f, nil
}

func decodeFaultDelay(b []byte) (*FaultDelay, error) {
	d := &FaultDelay{}
	fixed := false
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 3:
			d.Fixed, fixed = m.duration("fixed_delay"), true
		case 4:
			pb, _ := m.bytes()
			p, err := decodeFractionalPercent(pb)
			m.fail(err, "percentage")
			d.Percent = p
		case 5:
			m.fail(errNotSupported, "header_delay")
		}
	}
	switch {
	case m.err != nil:
		return nil, m.err
	case !fixed:
		return nil, within(errRequired, "fixed_delay")
	case d.Fixed < 0:
		return nil, within(errorf("must not be negative"), "fixed_delay")
	}
	return d, nil
}

func decodeFaultAbort(b []byte) (*FaultAbort, error) {
	a := &FaultAbort{}
	set := false
	m := msg{b: b, varints: 1<<2 | 1<<5}
	for m.next() {
		switch m.num {
		case 2:
			a.HTTPStatus, a.GRPC, set = int(m.uint32()), false, true
		case 5:
			a.GRPCStatus, a.GRPC, set = int(m.uint32()), true, true
		case 3:
			pb, _ := m.bytes()
			p, err := decodeFractionalPercent(pb)
			m.fail(err, "percentage")
			a.Percent = p
		case 4:
			m.fail(errNotSupported, "header_abort")
		case 6:
			m.fail(errNotSupported, "response_body")
		}
	}
	switch {
	case m.err != nil:
		return nil, m.err
	case !set:
		return nil, errorf("needs http_status or grpc_status")
	case !a.GRPC && (a.HTTPStatus < 200 || a.HTTPStatus >= 600):
		return nil, within(errorf("%d is not in [200, 600)", a.HTTPStatus), "http_status")
	}
	return a, nil
}

// decodeFractionalPercent reads an envoy.type.v3.FractionalPercent as
// millionths; a share above the whole is the whole, as in Envoy.
func decodeFractionalPercent(b []byte) (PerMillion, error) {
	var num uint64
	var denom int32
	m := msg{b: b, varints: 1<<1 | 1<<2}
	for m.next() {
		switch m.num {
		case 1:
			num = uint64(m.uint32())
		case 2:
			denom = m.enum()
		}
	}
	if m.err != nil {
		return 0, m.err
	}
	switch denom {
	case 0: // HUNDRED
		num *= 10_000
	case 1: // TEN_THOUSAND
		num *= 100
	case 2: // MILLION
	default:
		return 0, within(errorf("unknown denominator %d", denom), "denominator")
	}
	return PerMillion(min(num, uint64(Million))), nil
}

// decodeFaultFilter accepts the fault filter among http_filters when it
// only enables the per-route faults, as istiod sends it; faults on the
// filter itself would apply to every route, which the proxy does not do.
func decodeFaultFilter(value []byte) error {
	f, err := decodeFault(value)
	if err != nil {
		return err
	}
	if f.Delay != nil || f.Abort != nil {
		return errorf("a delay or abort on the fault filter itself is not supported by trellis-proxy: set them per route in typed_per_filter_config")
	}
	return nil
}

// decodePerFilterConfig reads one typed_per_filter_config entry into r.
// Only the fault filter's is read; others are left as before.
func decodePerFilterConfig(b []byte, r *Route) error {
	key, value, err := mapEntry(b)
	if err != nil || string(key) != FaultFilterName {
		return err
	}
	typeName, v, err := anyValue(value)
	if err != nil {
		return within(err, "["+string(key)+"]")
	}
	if typeName != faultType {
		return within(errorf("type %s is not the fault filter's %s", typeName, faultType), "["+string(key)+"]")
	}
	f, err := decodeFault(v)
	if err != nil {
		return within(err, "["+string(key)+"]")
	}
	r.Fault = f
	return nil
}

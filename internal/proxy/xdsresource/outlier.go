package xdsresource

import (
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// OutlierDetection is a cluster's outlier_detection as trellis-proxy
// honours it: Envoy's three consecutive-error detectors (5xx, gateway
// errors, and local-origin failures when split), ejection for base ×
// times-ejected (bounded by MaxEjectionTime, plus jitter), the interval
// sweep that brings hosts back, and MaxEjectionPercent. Each field holds
// Envoy's default when the resource leaves it unset. Success-rate and
// failure-percentage ejection are not implemented, so a resource that
// would enforce them is refused rather than silently served without.
type OutlierDetection struct {
	// Consecutive5xx ejects after that many 5xx in a row (local-origin
	// failures count as 503 or 504 unless SplitLocalOrigin); 0 never.
	Consecutive5xx uint32
	// ConsecutiveGatewayFailure ejects after that many 502, 503 or 504
	// in a row; it is enforced only with EnforcingGatewayFailure > 0.
	ConsecutiveGatewayFailure uint32
	// SplitLocalOrigin counts connection failures, resets and timeouts
	// apart from the host's answers, against ConsecutiveLocalOrigin.
	SplitLocalOrigin       bool
	ConsecutiveLocalOrigin uint32
	// The chance, in percent, that a detection ejects the host.
	Enforcing5xx, EnforcingGatewayFailure, EnforcingLocalOrigin uint32

	Interval         time.Duration // between sweeps; Envoy's 10 s
	BaseEjectionTime time.Duration // Envoy's 30 s
	MaxEjectionTime  time.Duration // Envoy's 300 s, or BaseEjectionTime if longer
	// MaxEjectionJitter adds up to that much, at random, to each ejection.
	MaxEjectionJitter time.Duration
	// MaxEjectionPercent caps the share of the cluster's hosts ejected at
	// once (Envoy's 10); AlwaysEjectOneHost lets one go even past it.
	MaxEjectionPercent uint32
	AlwaysEjectOneHost bool
}

// Envoy's outlier detection defaults.
const (
	defaultConsecutiveErrors  = 5
	defaultOutlierInterval    = 10 * time.Second
	defaultBaseEjectionTime   = 30 * time.Second
	defaultMaxEjectionTime    = 300 * time.Second
	defaultMaxEjectionPercent = 10
)

// decodeOutlierDetection reads an envoy.config.cluster.v3.OutlierDetection.
func decodeOutlierDetection(b []byte) (*OutlierDetection, error) {
	od := &OutlierDetection{
		Consecutive5xx:            defaultConsecutiveErrors,
		ConsecutiveGatewayFailure: defaultConsecutiveErrors,
		ConsecutiveLocalOrigin:    defaultConsecutiveErrors,
		Enforcing5xx:              100,
		EnforcingLocalOrigin:      100,
		Interval:                  defaultOutlierInterval,
		BaseEjectionTime:          defaultBaseEjectionTime,
		MaxEjectionPercent:        defaultMaxEjectionPercent,
	}
	// Envoy enforces success-rate ejection unless told not to, and for
	// local-origin errors too once they are split.
	successRate, localSuccessRate := uint32(100), uint32(100)
	var maxEjection time.Duration
	m := msg{b: b, varints: 1 << 12}
	positive := func(seg string) time.Duration {
		d := m.duration(seg)
		if d <= 0 && m.err == nil {
			m.fail(errorf("must be greater than 0"), seg)
		}
		return d
	}
	percent := func(seg string) uint32 {
		v := m.wrapped(seg)
		if v > 100 {
			m.fail(errorf("must be at most 100, got %d", v), seg)
		}
		return uint32(v)
	}
	for m.next() {
		switch m.num {
		case 1:
			od.Consecutive5xx = m.wrappedUint32("consecutive_5xx")
		case 2:
			od.Interval = positive("interval")
		case 3:
			od.BaseEjectionTime = positive("base_ejection_time")
		case 4:
			od.MaxEjectionPercent = percent("max_ejection_percent")
		case 5:
			od.Enforcing5xx = percent("enforcing_consecutive_5xx")
		case 6:
			successRate = percent("enforcing_success_rate")
		case 10:
			od.ConsecutiveGatewayFailure = m.wrappedUint32("consecutive_gateway_failure")
		case 11:
			od.EnforcingGatewayFailure = percent("enforcing_consecutive_gateway_failure")
		case 12:
			od.SplitLocalOrigin = m.bool()
		case 13:
			od.ConsecutiveLocalOrigin = m.wrappedUint32("consecutive_local_origin_failure")
		case 14:
			od.EnforcingLocalOrigin = percent("enforcing_consecutive_local_origin_failure")
		case 15:
			localSuccessRate = percent("enforcing_local_origin_success_rate")
		case 17:
			if percent("enforcing_failure_percentage") != 0 {
				m.fail(errorf("failure-percentage ejection is %w: set it to 0", errNotSupported), "enforcing_failure_percentage")
			}
		case 18:
			if percent("enforcing_failure_percentage_local_origin") != 0 {
				m.fail(errorf("failure-percentage ejection is %w: set it to 0", errNotSupported), "enforcing_failure_percentage_local_origin")
			}
		case 21:
			maxEjection = positive("max_ejection_time")
		case 22:
			od.MaxEjectionJitter = m.duration("max_ejection_time_jitter")
		case 24:
			m.fail(errNotSupported, "monitors")
		case 25:
			od.AlwaysEjectOneHost = m.wrappedBool("always_eject_one_host")
		case 26:
			if m.wrappedBool("detect_degraded_hosts") {
				m.fail(errNotSupported, "detect_degraded_hosts")
			}
		}
		// 7-9, 16, 19, 20 tune the success-rate and failure-percentage
		// detectors, which only count while not enforced; 23 concerns
		// active health checking, which the proxy does not do.
	}
	if m.err != nil {
		return nil, m.err
	}
	if successRate != 0 {
		return nil, within(errorf("success-rate ejection is %w: set it to 0, as Istio does", errNotSupported), "enforcing_success_rate")
	}
	if od.SplitLocalOrigin && localSuccessRate != 0 {
		return nil, within(errorf("success-rate ejection is %w: set it to 0, as Istio does", errNotSupported), "enforcing_local_origin_success_rate")
	}
	od.MaxEjectionTime = max(defaultMaxEjectionTime, od.BaseEjectionTime)
	if maxEjection != 0 {
		if maxEjection < od.BaseEjectionTime {
			return nil, within(errorf("%v is shorter than base_ejection_time %v", maxEjection, od.BaseEjectionTime), "max_ejection_time")
		}
		od.MaxEjectionTime = maxEjection
	}
	return od, nil
}

// decodeCommonLB reads the part of a cluster's common_lb_config the proxy
// uses: healthy_panic_threshold, which Istio sets from a DestinationRule's
// outlierDetection.minHealthPercent (0, no panic, unless set).
func decodeCommonLB(b []byte, c *Cluster) error {
	m := msg{b: b}
	for m.next() {
		if m.num != 1 {
			continue
		}
		pb, _ := m.bytes()
		v, err := percentValue(pb)
		m.fail(err, "healthy_panic_threshold")
		c.PanicThreshold = &v
	}
	return m.err
}

// percentValue reads an envoy.type.v3.Percent: a double, field 1, which
// msg (varints and length-delimited fields only) does not walk.
func percentValue(b []byte) (float64, error) {
	var v float64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, errorf("malformed protobuf: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.Fixed64Type {
			u, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return 0, errorf("malformed protobuf: %v", protowire.ParseError(n))
			}
			v, b = math.Float64frombits(u), b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, errorf("malformed protobuf: %v", protowire.ParseError(n))
		}
		b = b[n:]
	}
	if !(v >= 0 && v <= 100) {
		return 0, within(errorf("must be in [0, 100], got %s", strconv.FormatFloat(v, 'g', -1, 64)), "value")
	}
	return v, nil
}

package xdsresource

import (
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// SlowStart is Envoy's Cluster.SlowStartConfig, as istiod writes it for a
// DestinationRule's warmup: for Window after it joins, a new host's weight
// is scaled by max(MinWeightPercent/100, (age/Window)^(1/Aggression)).
type SlowStart struct {
	Window           time.Duration
	Aggression       float64 // > 0; Envoy's default 1 (linear)
	MinWeightPercent float64 // [0, 100]; Envoy's default 10
}

// decodePolicyLBConfig reads a cluster's policy-specific lb_config, field
// num of the Cluster: round_robin_lb_config (56; slow start in its field
// 1) or least_request_lb_config (37; field 3). The rest (least request's
// choice_count and active_request_bias) is left to the proxy's defaults,
// as before.
func decodePolicyLBConfig(num protowire.Number, b []byte, c *Cluster) error {
	slowStartField := protowire.Number(1)
	if num == 37 {
		slowStartField = 3
	}
	m := msg{b: b}
	for m.next() {
		if m.num != slowStartField {
			continue
		}
		sb, _ := m.bytes()
		ss, err := decodeSlowStart(sb)
		m.fail(err, "slow_start_config")
		c.SlowStart = ss
	}
	return m.err
}

func policyLBConfigName(num protowire.Number) string {
	if num == 37 {
		return "least_request_lb_config"
	}
	return "round_robin_lb_config"
}

func decodeSlowStart(b []byte) (*SlowStart, error) {
	ss := &SlowStart{Aggression: 1, MinWeightPercent: 10}
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			ss.Window = m.duration("slow_start_window")
		case 2:
			ab, _ := m.bytes()
			// RuntimeDouble: default_value (field 1); the runtime key
			// names a value the proxy has no runtime to look up.
			v, err := doubleField(ab, 1)
			if err == nil && !(v > 0) {
				err = within(errorf("must be > 0, got %s", strconv.FormatFloat(v, 'g', -1, 64)), "default_value")
			}
			m.fail(err, "aggression")
			ss.Aggression = v
		case 3:
			pb, _ := m.bytes()
			v, err := doubleField(pb, 1)
			if err == nil && !(v >= 0 && v <= 100) {
				err = within(errorf("must be in [0, 100], got %s", strconv.FormatFloat(v, 'g', -1, 64)), "value")
			}
			m.fail(err, "min_weight_percent")
			ss.MinWeightPercent = v
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	return ss, nil
}

// decodeLocalityLBConfig reads what common_lb_config says of localities:
// locality_weighted_lb_config (field 3, an empty message) turns on
// locality-weighted picks.
func decodeLocalityLBConfig(b []byte, c *Cluster) error {
	m := msg{b: b}
	for m.next() {
		if m.num == 3 {
			c.LocalityWeighted = true
		}
	}
	return m.err
}

// doubleField reads double field num of a message (0 when absent), which
// msg, walking varints and length-delimited fields only, skips.
func doubleField(b []byte, num protowire.Number) (float64, error) {
	var v float64
	for len(b) > 0 {
		n, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return 0, errorf("malformed protobuf: %v", protowire.ParseError(k))
		}
		b = b[k:]
		if n == num && typ == protowire.Fixed64Type {
			u, k := protowire.ConsumeFixed64(b)
			if k < 0 {
				return 0, errorf("malformed protobuf: %v", protowire.ParseError(k))
			}
			v, b = math.Float64frombits(u), b[k:]
			continue
		}
		if k = protowire.ConsumeFieldValue(n, typ, b); k < 0 {
			return 0, errorf("malformed protobuf: %v", protowire.ParseError(k))
		}
		b = b[k:]
	}
	return v, nil
}

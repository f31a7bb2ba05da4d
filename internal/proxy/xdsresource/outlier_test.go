package xdsresource_test

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/translate"
)

// outlierDRs cover istiod's translation: thresholds set, left out and 0,
// the local-origin split, minHealthPercent, and the deprecated
// consecutiveErrors, which istiod ignores.
const outlierDRs = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: v1-outlier}
spec:
  host: reviews-v1
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      consecutiveGatewayErrors: 2
      interval: 250ms
      baseEjectionTime: 2s
      maxEjectionPercent: 100
      minHealthPercent: 40
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: v2-outlier}
spec:
  host: reviews-v2
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 0
      consecutiveErrors: 7
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 4
  subsets:
  - name: split-default
    labels: {version: v2}
    trafficPolicy:
      outlierDetection:
        splitExternalLocalOriginErrors: true
`

// TestTranslatorOutlierDetection follows DestinationRule outlierDetection
// from YAML through istiod's translation to what the proxy decodes.
func TestTranslatorOutlierDetection(t *testing.T) {
	res := translate.ForProxy(world(t, outlierDRs), sidecarProxy, nil)
	got := map[string]*xdsresource.Cluster{}
	for _, c := range res.Clusters {
		_, v, err := decode(xdsresource.ClusterType, marshal(t, c))
		if err != nil {
			t.Fatalf("%s: %v", c.GetName(), err)
		}
		got[c.GetName()] = v.(*xdsresource.Cluster)
	}
	f := func(v float64) *float64 { return &v }
	envoy := xdsresource.OutlierDetection{ // Envoy's defaults
		Consecutive5xx: 5, ConsecutiveGatewayFailure: 5, ConsecutiveLocalOrigin: 5,
		Enforcing5xx: 100, EnforcingLocalOrigin: 100,
		Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second,
		MaxEjectionPercent: 10,
	}
	with := func(edit func(*xdsresource.OutlierDetection)) *xdsresource.OutlierDetection {
		od := envoy
		edit(&od)
		return &od
	}
	for name, want := range map[string]struct {
		od    *xdsresource.OutlierDetection
		panic *float64
	}{
		"outbound|9080||reviews-v1.default.svc.cluster.local": {with(func(od *xdsresource.OutlierDetection) {
			od.Consecutive5xx, od.ConsecutiveGatewayFailure, od.EnforcingGatewayFailure = 3, 2, 100
			od.Interval, od.BaseEjectionTime, od.MaxEjectionPercent = 250*time.Millisecond, 2*time.Second, 100
		}), f(40)},
		"outbound|9080||reviews-v2.default.svc.cluster.local": {with(func(od *xdsresource.OutlierDetection) {
			od.Consecutive5xx, od.Enforcing5xx = 0, 0
			od.SplitLocalOrigin, od.ConsecutiveLocalOrigin = true, 4
		}), f(0)},
		"outbound|9080|split-default|reviews-v2.default.svc.cluster.local": {with(func(od *xdsresource.OutlierDetection) {
			od.SplitLocalOrigin = true
		}), f(0)},
		"outbound|9080||ratings.default.svc.cluster.local": {},
	} {
		c := got[name]
		if c == nil {
			t.Errorf("no cluster %s", name)
			continue
		}
		if diff := cmp.Diff(want.od, c.Outlier); diff != "" {
			t.Errorf("%s outlier detection (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff(want.panic, c.PanicThreshold); diff != "" {
			t.Errorf("%s panic threshold (-want +got):\n%s", name, diff)
		}
	}
}

// TestOutlierDetectionDecode reads what Envoy's fields say and refuses,
// by path, what the proxy cannot do.
func TestOutlierDetectionDecode(t *testing.T) {
	zero := wrapperspb.UInt32(0)
	c := &clusterv3.Cluster{Name: "c",
		OutlierDetection: &clusterv3.OutlierDetection{
			EnforcingSuccessRate: zero, Consecutive_5Xx: wrapperspb.UInt32(9), EnforcingConsecutive_5Xx: wrapperspb.UInt32(50),
			MaxEjectionTime: durationpb.New(time.Minute), MaxEjectionTimeJitter: durationpb.New(time.Second),
			BaseEjectionTime: durationpb.New(time.Second), AlwaysEjectOneHost: wrapperspb.Bool(true),
			SuccessRateMinimumHosts: wrapperspb.UInt32(3), FailurePercentageThreshold: wrapperspb.UInt32(80),
		},
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 12.5}},
	}
	_, v, err := decode(xdsresource.ClusterType, marshal(t, c))
	if err != nil {
		t.Fatal(err)
	}
	got := v.(*xdsresource.Cluster)
	want := &xdsresource.OutlierDetection{Consecutive5xx: 9, ConsecutiveGatewayFailure: 5, ConsecutiveLocalOrigin: 5,
		Enforcing5xx: 50, EnforcingLocalOrigin: 100, Interval: 10 * time.Second, BaseEjectionTime: time.Second,
		MaxEjectionTime: time.Minute, MaxEjectionJitter: time.Second, MaxEjectionPercent: 10, AlwaysEjectOneHost: true}
	if diff := cmp.Diff(want, got.Outlier); diff != "" {
		t.Errorf("outlier detection (-want +got):\n%s", diff)
	}
	if got.PanicThreshold == nil || *got.PanicThreshold != 12.5 {
		t.Errorf("panic threshold %v, want 12.5", got.PanicThreshold)
	}

	for _, tc := range []struct {
		name string
		od   *clusterv3.OutlierDetection
		lb   *clusterv3.Cluster_CommonLbConfig
		want string
	}{
		{"success rate by default", &clusterv3.OutlierDetection{}, nil,
			"outlier_detection.enforcing_success_rate: success-rate ejection is not supported by trellis-proxy: set it to 0"},
		{"success rate enforced", &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(100)}, nil,
			"outlier_detection.enforcing_success_rate: success-rate ejection is not supported"},
		{"local success rate once split", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, SplitExternalLocalOriginErrors: true}, nil,
			"outlier_detection.enforcing_local_origin_success_rate: success-rate ejection is not supported"},
		{"failure percentage", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, EnforcingFailurePercentage: wrapperspb.UInt32(1)}, nil,
			"outlier_detection.enforcing_failure_percentage: failure-percentage ejection is not supported by trellis-proxy: set it to 0"},
		{"local failure percentage", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, EnforcingFailurePercentageLocalOrigin: wrapperspb.UInt32(1)}, nil,
			"outlier_detection.enforcing_failure_percentage_local_origin: failure-percentage ejection is not supported"},
		{"zero interval", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, Interval: durationpb.New(0)}, nil,
			"outlier_detection.interval: must be greater than 0"},
		{"zero base", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, BaseEjectionTime: durationpb.New(0)}, nil,
			"outlier_detection.base_ejection_time: must be greater than 0"},
		{"percent", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, MaxEjectionPercent: wrapperspb.UInt32(101)}, nil,
			"outlier_detection.max_ejection_percent: must be at most 100, got 101"},
		{"enforcing percent", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(200)}, nil,
			"outlier_detection.enforcing_consecutive_gateway_failure: must be at most 100, got 200"},
		{"max below base", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionTime: durationpb.New(time.Second)}, nil,
			"outlier_detection.max_ejection_time: 1s is shorter than base_ejection_time 1m0s"},
		{"monitors", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, Monitors: []*corev3.TypedExtensionConfig{{Name: "m"}}}, nil,
			"outlier_detection.monitors: not supported by trellis-proxy"},
		{"degraded", &clusterv3.OutlierDetection{EnforcingSuccessRate: zero, DetectDegradedHosts: wrapperspb.Bool(true)}, nil,
			"outlier_detection.detect_degraded_hosts: not supported by trellis-proxy"},
		{"panic threshold", nil, &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 101}},
			"common_lb_config.healthy_panic_threshold.value: must be in [0, 100], got 101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decode(xdsresource.ClusterType, marshal(t, &clusterv3.Cluster{Name: "c", OutlierDetection: tc.od, CommonLbConfig: tc.lb}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

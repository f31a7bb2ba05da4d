package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// applyOutlierDetection translates a DestinationRule's outlierDetection
// as istiod's cluster builder does (applyOutlierDetection in
// pilot/pkg/networking/core/cluster_traffic_policy.go), so that what
// Envoy would do with Istio's output is what the sidecar does:
//
//   - success-rate ejection is off (enforcing_success_rate 0, and for
//     local-origin errors once they are split);
//   - consecutive5xxErrors and consecutiveGatewayErrors are passed only
//     when set, enforced at 100% unless 0; unset, Envoy's defaults stand
//     (5 consecutive 5xx enforced, gateway errors not enforced);
//   - consecutiveLocalOriginFailures counts only with
//     splitExternalLocalOriginErrors, enforced at 100% when above 0;
//   - interval, baseEjectionTime and a maxEjectionPercent above 0 are
//     passed as they are (Envoy's defaults 10s, 30s, 10% otherwise);
//   - minHealthPercent becomes the cluster's healthy_panic_threshold, 0
//     (no panic mode) unless set: Istio finds Envoy's 50% unhelpful with
//     the few endpoints a Kubernetes service has.
//
// The deprecated consecutiveErrors is ignored, as istiod ignores it (its
// validation only warns). outlierDetectionHttpErrorCodes and
// failurePercentageThreshold are not translated (see the in-force table).
// Proxyless gRPC clients get none of it: grpc-go implements only the
// success-rate and failure-percentage detectors, which Istio turns off.
func (t *translation) applyOutlierDetection(c *clusterv3.Cluster, od *networking.OutlierDetection) {
	if od == nil || t.proxy.Generator == GeneratorGRPC {
		return
	}
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	if e := od.GetConsecutive_5XxErrors(); e != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(enforcedIfSet(e.GetValue()))
	}
	if e := od.GetConsecutiveGatewayErrors(); e != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(enforcedIfSet(e.GetValue()))
	}
	out.Interval = od.GetInterval()
	out.BaseEjectionTime = od.GetBaseEjectionTime()
	if p := od.GetMaxEjectionPercent(); p > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(p))
	}
	if od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		if n := od.GetConsecutiveLocalOriginFailures().GetValue(); n > 0 {
			out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(n)
			out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
		}
		out.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0)
	}
	c.OutlierDetection = out
	if p := od.GetMinHealthPercent(); p >= 0 {
		if c.CommonLbConfig == nil {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}
		c.CommonLbConfig.HealthyPanicThreshold = &typev3.Percent{Value: float64(p)}
	}
}

// enforcedIfSet is istiod's enforcing percentage for a consecutive-error
// threshold: 100 for a threshold, 0 when the threshold is 0.
func enforcedIfSet(threshold uint32) uint32 {
	if threshold > 0 {
		return 100
	}
	return 0
}

package translate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	httpfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"
)

const faultFilterName = "envoy.filters.http.fault"

// faultFilter is the fault filter as istiod puts it ahead of the router in
// a sidecar's outbound connection managers: empty, so only the routes'
// own faults (typed_per_filter_config) apply.
func faultFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: faultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&httpfaultv3.HTTPFault{})}}
}

// applyFault gives a route its VirtualService fault. Istio documents that
// timeouts and retries are not enabled beside a fault on the same rule,
// so the route keeps no timeout (the injected delay is not cut short by
// it) and no retry policy (an injected abort is the answer).
// Proxyless gRPC listeners carry no fault filter, so their routes get
// none either.
func (t *translation) applyFault(r *routev3.Route, f *networking.HTTPFaultInjection) {
	if f == nil || t.proxy.Generator == GeneratorGRPC {
		return
	}
	hf := translateFault(f)
	if hf == nil {
		return
	}
	if r.TypedPerFilterConfig == nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	r.TypedPerFilterConfig[faultFilterName] = mustAny(hf)
	if a := r.GetRoute(); a != nil {
		a.Timeout = zeroDuration()
		a.RetryPolicy = nil
	}
}

// translateFault is istiod's translation: percentage as millionths,
// the deprecated integer percent as hundredths, a gRPC status by name.
// Validation refuses the kinds left out (exponentialDelay, http2Error).
func translateFault(in *networking.HTTPFaultInjection) *httpfaultv3.HTTPFault {
	out := &httpfaultv3.HTTPFault{}
	if d := in.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		out.Delay = &faultv3.FaultDelay{FaultDelaySecifier: &faultv3.FaultDelay_FixedDelay{FixedDelay: d.GetFixedDelay()}}
		if d.GetPercentage() != nil {
			out.Delay.Percentage = perMillion(d.GetPercentage().GetValue())
		} else {
			//lint:ignore SA1019 users still write the deprecated field, which Istio honours
			out.Delay.Percentage = &typev3.FractionalPercent{Numerator: uint32(max(d.GetPercent(), 0)), Denominator: typev3.FractionalPercent_HUNDRED}
		}
	}
	if a := in.GetAbort(); a != nil {
		out.Abort = &httpfaultv3.FaultAbort{}
		if a.GetPercentage() != nil {
			out.Abort.Percentage = perMillion(a.GetPercentage().GetValue())
		}
		switch et := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			out.Abort.ErrorType = &httpfaultv3.FaultAbort_HttpStatus{HttpStatus: uint32(et.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			var c codes.Code
			if err := c.UnmarshalJSON([]byte(`"` + et.GrpcStatus + `"`)); err != nil {
				out.Abort = nil
				break
			}
			out.Abort.ErrorType = &httpfaultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(c)}
		default:
			out.Abort = nil
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

func perMillion(pct float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(min(max(pct, 0), 100) * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// applyMirrors gives a route action its VirtualService mirrors as istiod
// does: mirror with mirrorPercentage (else the deprecated mirrorPercent,
// else 100%), then each of mirrors with its own percentage (else 100%); an
// explicit 0 sends no copies. The mirror's cluster is named as a route
// destination's. Proxyless gRPC clients do not mirror, and get none.
func (t *translation) applyMirrors(a *routev3.RouteAction, hr *networking.HTTPRoute, vsNS string, port uint32) {
	if t.proxy.Generator == GeneratorGRPC {
		return
	}
	if d := hr.GetMirror(); d != nil {
		if pct := mirrorShare(hr); pct != nil {
			a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mirrorPolicy(t.destinationCluster(d, vsNS, port), pct))
		}
	}
	for _, mp := range hr.GetMirrors() {
		if mp.GetDestination() == nil {
			continue
		}
		pct := hundredths(100)
		if p := mp.GetPercentage(); p != nil {
			if p.GetValue() <= 0 {
				continue
			}
			pct = perMillion(p.GetValue())
		}
		a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mirrorPolicy(t.destinationCluster(mp.GetDestination(), vsNS, port), pct))
	}
}

// mirrorShare is istiod's MirrorPercent: nil when no copies are to go.
func mirrorShare(hr *networking.HTTPRoute) *typev3.FractionalPercent {
	switch {
	case hr.GetMirrorPercentage() != nil:
		if v := hr.GetMirrorPercentage().GetValue(); v > 0 {
			return perMillion(v)
		}
		return nil
	//lint:ignore SA1019 users still write the deprecated field, which Istio honours
	case hr.GetMirrorPercent() != nil:
		//lint:ignore SA1019 as above
		if v := hr.GetMirrorPercent().GetValue(); v > 0 {
			return hundredths(v)
		}
		return nil
	}
	return hundredths(100)
}

func hundredths(v uint32) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: min(v, 100), Denominator: typev3.FractionalPercent_HUNDRED}
}

func mirrorPolicy(cluster string, pct *typev3.FractionalPercent) *routev3.RouteAction_RequestMirrorPolicy {
	return &routev3.RouteAction_RequestMirrorPolicy{
		Cluster:         cluster,
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: pct},
		TraceSampled:    wrapperspb.Bool(false),
	}
}

// gwMirrors gives a rule's shared route action the rule's RequestMirror
// filters, as Istio turns each into one of mirrors: the backendRef's
// cluster (its port, else the route's), percent as a percentage, fraction
// as numerator/denominator (100 by default), 100% with neither, none at
// 0. A rule answered by a redirect or a 500 mirrors nothing.
func (t *translation) gwMirrors(action any, filters []gatewayv1.HTTPRouteFilter, routeNS string, port uint32) {
	a, ok := action.(*routev3.RouteAction)
	if !ok || t.proxy.Generator == GeneratorGRPC {
		return
	}
	for _, f := range filters {
		m := f.RequestMirror
		if f.Type != gatewayv1.HTTPRouteFilterRequestMirror || m == nil {
			continue
		}
		pct := hundredths(100)
		switch {
		case m.Fraction != nil:
			denom := float64(100)
			if m.Fraction.Denominator != nil {
				denom = float64(*m.Fraction.Denominator)
			}
			if denom <= 0 || m.Fraction.Numerator <= 0 {
				continue
			}
			pct = perMillion(100 * float64(m.Fraction.Numerator) / denom)
		case m.Percent != nil:
			if *m.Percent <= 0 {
				continue
			}
			pct = hundredths(uint32(*m.Percent))
		}
		ref := m.BackendRef
		ns := routeNS
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		p := port
		if ref.Port != nil {
			p = uint32(*ref.Port)
		}
		cluster := ClusterName("outbound", p, "", t.w.Reg.FQDN(string(ref.Name)+"."+ns, ns))
		a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mirrorPolicy(cluster, pct))
	}
}

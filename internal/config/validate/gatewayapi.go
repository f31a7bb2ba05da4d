package validate

import (
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/trellismesh/trellis/api/split"
	"github.com/trellismesh/trellis/internal/config/field"
)

// HTTPRoute checks one Gateway API HTTPRoute.
func HTTPRoute(m Meta, r *gatewayv1.HTTPRoute) field.List { return nil }

// GRPCRoute checks one Gateway API GRPCRoute.
func GRPCRoute(m Meta, r *gatewayv1.GRPCRoute) field.List { return nil }

// GatewayAPIGateway checks one Gateway API Gateway.
func GatewayAPIGateway(m Meta, g *gatewayv1.Gateway) field.List { return nil }

// TrafficSplit checks one SMI TrafficSplit (canonical form; weights in milli-units).
func TrafficSplit(m Meta, ts *split.TrafficSplit) field.List { return nil }

package registry

import "strings"

// Proxyless gRPC workloads, as Istio marks them: the pod asks the injector
// for the grpc-agent template (annotation inject.istio.io/templates:
// grpc-agent, a comma-separated list) instead of a sidecar. Istio's Envoy
// sidecars reach every meshed endpoint with direct mTLS, so istiod has no
// need to tell the two apart; Trellis sidecars reach sidecars through
// their tunnel port, which a proxyless gRPC server does not have, so the
// endpoint must say which it is. The same annotation on a WorkloadEntry
// marks a VM running proxyless gRPC.

// InjectTemplatesAnnotation names the injection templates a pod asks for.
const InjectTemplatesAnnotation = "inject.istio.io/templates"

// GRPCAgentTemplate is Istio's template for proxyless gRPC workloads.
const GRPCAgentTemplate = "grpc-agent"

// IsProxyless reports whether an object's annotations ask for the
// grpc-agent template.
func IsProxyless(annotations map[string]string) bool {
	for _, t := range strings.Split(annotations[InjectTemplatesAnnotation], ",") {
		if strings.TrimSpace(t) == GRPCAgentTemplate {
			return true
		}
	}
	return false
}

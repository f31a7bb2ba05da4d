// Package kubeapi holds the per-object checks for the Kubernetes-style APIs
// Trellis reads: core (Namespace, Service, ServiceAccount, ConfigMap, Pod),
// apps Deployment, discovery EndpointSlice, Gateway API routes and Gateways,
// and SMI TrafficSplit. Each check is what the API server (or the CRD
// schema) would reject, plus what Trellis needs to serve the object; Istio
// kinds live in the parent package.
package kubeapi

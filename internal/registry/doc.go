// Package registry is the control plane's view of services and their
// endpoints, built from the validated config world: Kubernetes Services
// with EndpointSlices and Pods, Services selecting WorkloadEntries, and
// ServiceEntries. Names resolve as in Kubernetes (reviews, reviews.ns,
// reviews.ns.svc, reviews.ns.svc.cluster.local) and visibility follows
// Istio's exportTo and Sidecar egress rules.
//
// A Registry is immutable once built; a config change builds a new one.
package registry

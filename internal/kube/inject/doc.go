// Package inject is the pod mutation of sidecar injection in Kubernetes
// mode: it adds the trellis-proxy sidecar, the trellis-init capture init
// container, the projected service-account token the proxy authenticates
// to the CA with, and rewrites the app's probes to go through the
// sidecar, reading Istio's injection annotations so Istio manifests keep
// their meaning.
//
// It is pure (no API server): `trellis inject` runs it offline on YAML,
// and the mutating admission webhook will run the same code on pods, so
// both modes of injection give byte-identical pods.
package inject

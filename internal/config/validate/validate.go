package validate

// Meta is the metadata a check may need besides the spec.
type Meta struct {
	Namespace string
	Name      string
	Labels    map[string]string
	// Annotations are the object's metadata.annotations; Trellis reads a
	// few of its own (LoadBalancerAnnotation).
	Annotations map[string]string
	// RootNamespace is the mesh root namespace (MeshConfig.rootNamespace,
	// default istio-system): policies there apply mesh-wide.
	RootNamespace string
}

// LoadBalancerAnnotation on a DestinationRule picks a Trellis load
// balancer that Istio's API has no name for; its only value is PeakEWMA,
// which refines LEAST_REQUEST (the default) with latency.
const (
	LoadBalancerAnnotation = "trellis.io/load-balancer"
	PeakEWMA               = "PEAK_EWMA"
)

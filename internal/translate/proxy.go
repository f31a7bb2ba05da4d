// Package translate turns the validated config world into Envoy xDS v3
// resources for one proxy: Listeners, RouteConfigurations, Clusters and
// ClusterLoadAssignments. It is pure: no I/O, no clocks, no Kubernetes
// client, and the same input always gives the same output (golden tests
// rely on it).
//
// What a proxy receives depends on who it is: its namespace and labels
// (scoping by exportTo and Sidecar, sourceLabels matches) and its client
// kind. Trellis sidecars get Istio-shaped sidecar resources; proxyless
// gRPC clients (node metadata GENERATOR=grpc) get only what grpc-go
// accepts, with unsupported settings mapped or dropped and logged.
package translate

import "sort"

// Generator names the client kind that decides the resource shape.
type Generator string

// Generators.
const (
	GeneratorSidecar Generator = ""     // trellis-proxy (and, in principle, Envoy)
	GeneratorGRPC    Generator = "grpc" // proxyless grpc-go
)

// Proxy is who is asking: parsed from the xDS node.
type Proxy struct {
	ID             string // node id as sent
	IP             string
	Pod            string
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
	Generator      Generator
	// InterceptionMode is NONE (explicit, local mode) or REDIRECT (capture).
	InterceptionMode string
}

func (p *Proxy) labelKey() string {
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s string
	for _, k := range keys {
		s += k + "=" + p.Labels[k] + ","
	}
	return s
}

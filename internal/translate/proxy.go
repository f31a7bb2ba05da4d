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

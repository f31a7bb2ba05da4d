package registry

import (
	"strings"

	"github.com/trellismesh/trellis/internal/config/hostmatch"
)

// ndots is Kubernetes' resolv.conf setting: names with fewer dots go
// through the search list before being tried as written.
const ndots = 5

// Lookup resolves a host as a client in namespace ns would: "reviews" ->
// reviews.<ns>.svc.<suffix>, "reviews.other", "reviews.other.svc", a FQDN,
// or a ServiceEntry host exactly; failing those, the most specific
// wildcard ServiceEntry host (*.example.com) that covers it. Returns nil
// when unknown. Visibility is not checked: see Visible.
func (r *Registry) Lookup(host, ns string) *Service {
	if s, _ := r.lookupExact(host, ns); s != nil {
		return s
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	for _, w := range r.wildcards {
		if hostmatch.Within(name, w.Hostname) {
			return w
		}
	}
	return nil
}

// FQDN returns the fully qualified name a host means from namespace ns,
// even if no service exists: "reviews" in "default" ->
// "reviews.default.svc.cluster.local", "reviews.other.svc" ->
// "reviews.other.svc.cluster.local", "example.com" stays. A name that
// Lookup finds exactly gives that service's Hostname, so "reviews.other"
// means the Service when there is one and stays as written when not.
func (r *Registry) FQDN(host, ns string) string {
	s, name := r.lookupExact(host, ns)
	if s != nil {
		return s.Hostname
	}
	switch {
	case name == "" || name == "*" || strings.HasPrefix(name, "*."):
		return name
	case !strings.Contains(name, "."):
		return name + "." + ns + ".svc." + r.suffix
	case strings.HasSuffix(name, ".svc"):
		return name + "." + r.suffix
	}
	return name
}

// lookupExact tries the names the Kubernetes resolver would, in its order,
// and returns the first service found and the normalised host.
func (r *Registry) lookupExact(host, ns string) (*Service, string) {
	absolute := strings.HasSuffix(host, ".")
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "" {
		return nil, name
	}
	if s := r.byHost[name]; s != nil && (absolute || strings.Count(name, ".") >= ndots) {
		return s, name
	}
	if !absolute {
		for _, search := range [...]string{ns + ".svc." + r.suffix, "svc." + r.suffix, r.suffix} {
			if s := r.byHost[name+"."+search]; s != nil {
				return s, name
			}
		}
	}
	return r.byHost[name], name
}

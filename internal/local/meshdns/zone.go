package meshdns

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
)

// Service is one Kubernetes Service as DNS sees it.
type Service struct {
	Namespace, Name string
	// VIPs are the Service's cluster IPs (IPv4 and/or IPv6), answered for
	// a normal Service.
	VIPs []netip.Addr
	// Headless marks a `clusterIP: None` Service: its name resolves to
	// PodIPs instead of VIPs.
	Headless bool
	// PodIPs are the IPs of the Service's ready pods; used only when
	// Headless, as a headless Service has no VIP for clients to use.
	PodIPs []netip.Addr
}

// zone is one immutable snapshot of the served names. SetServices builds a
// new one and swaps a pointer, so a query always sees a whole snapshot and
// never takes a lock.
type zone struct {
	// origin is the domain with a trailing dot, lower case: "cluster.local.".
	origin string
	// serial is the SOA serial; it changes with every snapshot so that a
	// resolver comparing serials sees the zone change.
	serial uint32
	// addrs maps a lower-case fully qualified name to its addresses. A name
	// present with no addresses exists (NOERROR, no data).
	addrs map[string][]netip.Addr
}

// lookup tells whether name (lower case, fully qualified) is in the zone,
// whether it exists and which addresses it has.
func (z *zone) lookup(name string) (inZone, exists bool, addrs []netip.Addr) {
	if !inDomain(name, z.origin) {
		return false, false, nil
	}
	addrs, exists = z.addrs[name]
	return true, exists, addrs
}

// inDomain reports whether name equals origin or is below it; both are fully
// qualified and lower case.
func inDomain(name, origin string) bool {
	if name == origin {
		return true
	}
	return strings.HasSuffix(name, "."+origin) || origin == "."
}

func buildZone(origin string, serial uint32, svcs []Service, log *slog.Logger) *zone {
	z := &zone{origin: origin, serial: serial, addrs: make(map[string][]netip.Addr)}
	// The apex and `svc.<domain>` always exist, as in a cluster, so that a
	// resolver walking the search list gets NOERROR/no data rather than an
	// NXDOMAIN that (RFC 8020) would deny every name below them.
	z.addrs[origin] = nil
	z.addrs["svc."+origin] = nil
	for _, svc := range svcs {
		ns, name := lowerASCII(svc.Namespace), lowerASCII(svc.Name)
		if !isLabel(ns) || !isLabel(name) {
			// The store validates names; a bad one here is a bug upstream,
			// and one bad Service must not hide the others.
			log.Warn("meshdns: skipping service with a name that is not a DNS label", "namespace", svc.Namespace, "name", svc.Name)
			continue
		}
		// A namespace holding Services exists as an empty non-terminal.
		nsName := ns + ".svc." + origin
		if _, ok := z.addrs[nsName]; !ok {
			z.addrs[nsName] = nil
		}
		src := svc.VIPs
		if svc.Headless {
			src = svc.PodIPs
		}
		fqdn := name + "." + nsName
		var addrs []netip.Addr
		for _, a := range src {
			a = a.Unmap() // a 4in6 address is an IPv4 address: serve it as A
			if !a.IsValid() || slices.Contains(addrs, a) {
				continue
			}
			addrs = append(addrs, a.WithZone(""))
		}
		// Assigning creates the key even with no addresses: the Service's
		// name exists (NOERROR, no data). Two Services with one name (a bug
		// upstream) merge rather than one silently winning.
		z.addrs[fqdn] = append(z.addrs[fqdn], addrs...)
	}
	return z
}

// isLabel reports whether s is an RFC 1123 label, as Kubernetes requires of
// namespace and Service names.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases ASCII letters only: DNS compares names
// case-insensitively in ASCII only (RFC 4343); strings.ToLower would also map
// non-ASCII letters (the Kelvin sign to 'k'), making distinct names equal.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

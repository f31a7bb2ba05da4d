package dnsproxy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

// Table maps the names the sidecar's config knows to their addresses. It is
// immutable once built; the Server swaps whole tables.
type Table struct {
	// hosts is keyed by the lower-case name with a trailing dot, as a DNS
	// question spells it.
	hosts map[string][]netip.Addr
}

// NewTable builds the names the proxy's applied config gives addresses:
//
//   - every virtual host of the route configurations (and of routes inline in
//     listeners) that lists IP literals among its domains (a Service's VIPs,
//     a ServiceEntry's addresses): each of its other domains, port stripped,
//     names those addresses;
//   - every TCP listener with a specific address and a service host in its
//     metadata: the host names that address.
//
// Wildcard domains and virtual hosts without an IP literal (a ServiceEntry
// without addresses) give no names: those queries go upstream.
func NewTable(listeners []*xdsresource.Listener, routes []*xdsresource.RouteConfig) *Table {
	t := &Table{hosts: map[string][]netip.Addr{}}
	addRoutes := func(rc *xdsresource.RouteConfig) {
		for _, vh := range rc.VirtualHosts {
			t.addDomains(vh.Domains)
		}
	}
	for _, rc := range routes {
		if rc != nil {
			addRoutes(rc)
		}
	}
	for _, l := range listeners {
		if l == nil {
			continue
		}
		for _, fc := range l.FilterChains {
			if fc.HTTP != nil && fc.HTTP.RouteConfig != nil {
				addRoutes(fc.HTTP.RouteConfig)
			}
		}
		if l.Host == "" {
			continue
		}
		a, err := netip.ParseAddr(l.Address)
		if err != nil || a.IsUnspecified() {
			continue
		}
		if name, ok := canonical(l.Host); ok {
			t.add(name, a.Unmap())
		}
	}
	for name, addrs := range t.hosts {
		slices.SortFunc(addrs, func(a, b netip.Addr) int {
			// IPv4 first, then by value: a stable answer order.
			if a.Is4() != b.Is4() {
				if a.Is4() {
					return -1
				}
				return 1
			}
			return a.Compare(b)
		})
		t.hosts[name] = slices.Compact(addrs)
	}
	return t
}

func (t *Table) addDomains(domains []string) {
	var addrs []netip.Addr
	var names []string
	for _, d := range domains {
		host, ok := stripPort(d)
		if !ok {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil {
			addrs = append(addrs, a.Unmap())
			continue
		}
		if name, ok := canonical(host); ok {
			names = append(names, name)
		}
	}
	if len(addrs) == 0 {
		return
	}
	for _, n := range names {
		t.add(n, addrs...)
	}
}

func (t *Table) add(name string, addrs ...netip.Addr) {
	t.hosts[name] = append(t.hosts[name], addrs...)
}

// Lookup returns the addresses of name (any case, with or without the
// trailing dot) and whether the table knows it. The slice must not be
// modified.
func (t *Table) Lookup(name string) ([]netip.Addr, bool) {
	if t == nil {
		return nil, false
	}
	key := lowerASCII(name)
	if !strings.HasSuffix(key, ".") {
		key += "."
	}
	addrs, ok := t.hosts[key]
	return addrs, ok
}

// Len is the number of names the table knows.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.hosts)
}

// stripPort returns a domain's host: "[fd00::1]:80" → "fd00::1",
// "reviews:9080" → "reviews", "10.96.0.16" → "10.96.0.16". Wildcards and
// malformed domains are refused.
func stripPort(d string) (string, bool) {
	if d == "" || strings.Contains(d, "*") {
		return "", false
	}
	if strings.HasPrefix(d, "[") {
		end := strings.IndexByte(d, ']')
		if end < 0 {
			return "", false
		}
		rest := d[end+1:]
		if rest != "" && !isPort(strings.TrimPrefix(rest, ":")) {
			return "", false
		}
		return d[1:end], true
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return d, true // an IPv6 literal without brackets
	}
	if host, port, ok := strings.Cut(d, ":"); ok {
		if !isPort(port) {
			return "", false
		}
		return host, true
	}
	return d, true
}

func isPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n > 0
}

// canonical returns name lower-cased with a trailing dot if it is a valid
// DNS name of letters, digits, '-' and '_' labels.
func canonical(name string) (string, bool) {
	name = strings.TrimSuffix(lowerASCII(name), ".")
	if name == "" || len(name) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return name + ".", true
}

// lowerASCII lower-cases ASCII letters only: DNS names compare without case
// for ASCII alone (RFC 4343).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

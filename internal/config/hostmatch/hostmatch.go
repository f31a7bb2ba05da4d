package hostmatch

import "strings"

func wildcard(n string) bool { return len(n) > 0 && n[0] == '*' }

// Overlap reports whether some name matches both a and b: equal plain
// names, or a wildcard covering the other (Istio's Name.Matches).
func Overlap(a, b string) bool {
	aw, bw := wildcard(a), wildcard(b)
	switch {
	case aw && bw:
		if len(a) < len(b) {
			return strings.HasSuffix(b[1:], a[1:])
		}
		return strings.HasSuffix(a[1:], b[1:])
	case aw:
		return strings.HasSuffix(b, a[1:])
	case bw:
		return strings.HasSuffix(a, b[1:])
	}
	return a == b
}

// Within reports whether every name n matches is matched by o (Istio's
// Name.SubsetOf): a route for o applies to a service named n.
func Within(n, o string) bool {
	nw, ow := wildcard(n), wildcard(o)
	switch {
	case nw:
		return ow && strings.HasSuffix(n[1:], o[1:])
	case ow:
		return strings.HasSuffix(n, o[1:])
	}
	return n == o
}

package hostmatch

import "testing"

// The cases are the ones Istio documents for Name.Matches and
// Name.SubsetOf (pkg/config/host/name.go), plus the edges between them.
func TestOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"foo.com", "foo.com", true},
		{"foo.com", "bar.com", false},
		{"*.com", "foo.com", true},
		{"bar.com", "*.com", true},
		{"*.foo.com", "foo.com", false},
		{"*", "foo.com", true},
		{"*", "*.com", true},
		{"*.com", "*.foo.com", true},
		{"*.foo.com", "*.com", true},
		{"*.foo.com", "*.bar.com", false},
		{"*foo.com", "barfoo.com", true}, // Istio's "*" is a suffix match, not a label match
		{"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local", true},
		{"reviews.default.svc.cluster.local", "*.svc.cluster.local", true},
		{"reviews.default.svc.cluster.local", "*.other.svc.cluster.local", false},
	} {
		if got := Overlap(c.a, c.b); got != c.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := Overlap(c.b, c.a); got != c.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v (it is symmetric)", c.b, c.a, got, c.want)
		}
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		n, o string
		want bool
	}{
		{"foo.com", "foo.com", true},
		{"foo.com", "bar.com", false},
		{"foo.com", "*.com", true},
		{"*.foo.com", "*.com", true},
		{"*.foo.com", "foo.com", false},
		{"*.com", "*.foo.com", false},
		{"*.com", "foo.com", false},
		{"foo.com", "*", true},
		{"*.com", "*", true},
		{"*", "*.com", false},
		{"*", "*", true},
	} {
		if got := Within(c.n, c.o); got != c.want {
			t.Errorf("Within(%q, %q) = %v, want %v", c.n, c.o, got, c.want)
		}
	}
}

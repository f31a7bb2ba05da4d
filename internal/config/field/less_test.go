package field

import "testing"

// The cases the analyzer and the decoder each tested for their own copy.
func TestLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"spec.ports[2]", "spec.ports[10]", true},
		{"spec.ports[10]", "spec.ports[2]", false},
		{"spec.http[1].route[0]", "spec.http[1].route[0].destination", true},
		{"spec.hosts[0]", "spec.http[0]", true},
		{"spec.http[2]", "spec.http[10]", true},
		{"spec.http[10]", "spec.http[2]", false},
		{"spec.http[1].route", "spec.http[1].route[0]", true},
		{"metadata.name", "spec", true},
		{"a", "a", false},
	} {
		if got := Less(c.a, c.b); got != c.want {
			t.Errorf("Less(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

package registry

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trellismesh/trellis/internal/config"
)

// parse decodes a YAML stream, failing the test on any error or warning so
// that fixtures stay valid as validation grows.
func parse(t testing.TB, yaml string) []*config.Object {
	t.Helper()
	f := config.ParseFile(t.Name()+".yaml", []byte(yaml))
	for _, err := range f.Errors {
		t.Errorf("fixture: %v", err)
	}
	for _, err := range f.Warnings {
		if config.IsNotInForce(err) {
			continue // fixtures use fields not in force on purpose (TRL0007)
		}
		t.Errorf("fixture warning: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return f.Objects
}

func build(t testing.TB, yaml string) *Registry {
	t.Helper()
	return Build(parse(t, yaml), "cluster.local")
}

func mustLookup(t *testing.T, r *Registry, host, ns string) *Service {
	t.Helper()
	s := r.Lookup(host, ns)
	if s == nil {
		t.Fatalf("Lookup(%q, %q) = nil; services: %v", host, ns, hostnames(r.Services()))
	}
	return s
}

func hostnames(ss []*Service) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Hostname)
	}
	return out
}

func diff(t *testing.T, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mismatch (-want +got):\n%s", d)
	}
}

package store

import (
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
)

const goodVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
`

func keys(s *Snapshot) []string {
	var out []string
	for _, o := range s.Objects {
		out = append(out, o.ID())
	}
	return out
}

func newStore() *Store { return New(slog.New(slog.DiscardHandler)) }

func TestApplyAndRemove(t *testing.T) {
	s := newStore()
	ch, stop := s.Subscribe()
	defer stop()
	s.ApplyFile(config.ParseFile("a.yaml", []byte(goodVS)))
	select {
	case <-ch:
	default:
		t.Fatal("no change notification after ApplyFile")
	}
	want := []string{"Service default/reviews", "VirtualService default/reviews"}
	if d := cmp.Diff(want, keys(s.Snapshot())); d != "" {
		t.Fatalf("objects (-want +got):\n%s", d)
	}
	s.Remove("a.yaml")
	if got := keys(s.Snapshot()); len(got) != 0 {
		t.Fatalf("after Remove: %v", got)
	}
}

// An invalid edit of one object keeps that object's last good version and
// still applies the valid objects of the same file.
func TestInvalidEditKeepsLastGood(t *testing.T) {
	s := newStore()
	s.ApplyFile(config.ParseFile("a.yaml", []byte(goodVS)))
	before := s.Snapshot().Get(config.Key{GroupKind: config.VirtualService, Namespace: "default", Name: "reviews"})

	bad := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destinaton: {host: reviews}
---
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews2}
  ports: [{name: http, port: 9080}]
`
	errs := s.ApplyFile(config.ParseFile("a.yaml", []byte(bad)))
	if len(errs) != 1 {
		t.Fatalf("want 1 error, got %v", errs)
	}
	snap := s.Snapshot()
	after := snap.Get(config.Key{GroupKind: config.VirtualService, Namespace: "default", Name: "reviews"})
	if after != before {
		t.Fatalf("VirtualService replaced by an invalid edit")
	}
	if len(after.Spec.(*networking.VirtualService).GetHttp()[0].GetRoute()) != 1 {
		t.Fatal("last good VirtualService lost its route")
	}
	svc := snap.Get(config.Key{GroupKind: config.Service, Namespace: "default", Name: "reviews"})
	if svc == nil || svc.Source.File != "a.yaml" {
		t.Fatal("valid Service in the same file was not applied")
	}
	if got := svc.Spec; got == nil {
		t.Fatal("service has no spec")
	}
}

// Broken YAML cannot say which object it was meant to be, so everything
// the file gave before stays.
func TestBrokenYAMLKeepsFile(t *testing.T) {
	s := newStore()
	s.ApplyFile(config.ParseFile("a.yaml", []byte(goodVS)))
	s.ApplyFile(config.ParseFile("a.yaml", []byte("kind: [unclosed\n")))
	if got := len(s.Snapshot().Objects); got != 2 {
		t.Fatalf("want the 2 last good objects, got %d", got)
	}
}

// When two files define one object, the outcome must not depend on the
// order they were read: the path that sorts first wins.
func TestDuplicateAcrossFiles(t *testing.T) {
	for _, order := range [][]string{{"a.yaml", "b.yaml"}, {"b.yaml", "a.yaml"}} {
		s := newStore()
		for _, f := range order {
			s.ApplyFile(config.ParseFile(f, []byte(goodVS)))
		}
		for _, o := range s.Snapshot().Objects {
			if o.Source.File != "a.yaml" {
				t.Fatalf("order %v: %s came from %s, want a.yaml", order, o.ID(), o.Source.File)
			}
		}
	}
}

func TestMeshConfigFromConfigMap(t *testing.T) {
	s := newStore()
	if got := s.Snapshot().Mesh.GetRootNamespace(); got != "istio-system" {
		t.Fatalf("default root namespace %q", got)
	}
	s.ApplyFile(config.ParseFile("mesh.yaml", []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    trustDomain: example.org
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`)))
	m := s.Snapshot().Mesh
	if m.GetTrustDomain() != "example.org" || m.GetOutboundTrafficPolicy().GetMode().String() != "REGISTRY_ONLY" {
		t.Fatalf("mesh config not read: %v", m)
	}
}

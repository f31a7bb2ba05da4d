package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
)

func podObject(name, ip string) *config.Object {
	p := &corev1.Pod{}
	p.Name, p.Namespace = name, "default"
	p.Status.PodIP = ip
	return &config.Object{Source: config.Source{File: "trellis up"}, APIVersion: "v1", GroupKind: config.Pod, Namespace: "default", Name: name, Spec: p}
}

// A file and a source that is no file (as `trellis up` publishes pods)
// apply, replace and remove their objects without touching each other's.
func TestSourcesAreIndependent(t *testing.T) {
	s := newStore()
	var sink Sink = s
	const podSource = "trellis up: pod default/reviews-1"
	vsKey := config.Key{GroupKind: config.VirtualService, Namespace: "default", Name: "reviews"}
	svcKey := config.Key{GroupKind: config.Service, Namespace: "default", Name: "reviews"}
	podKey := config.Key{GroupKind: config.Pod, Namespace: "default", Name: "reviews-1"}

	f := config.ParseFile("a.yaml", []byte(goodVS))
	sink.Apply(f.Path, f.Objects, f.Errors)
	sink.Apply(podSource, []*config.Object{podObject("reviews-1", "10.0.0.1")}, nil)
	if d := cmp.Diff([]string{"a.yaml", podSource}, s.Sources()); d != "" {
		t.Fatalf("sources (-want +got):\n%s", d)
	}
	want := []string{"Pod default/reviews-1", "Service default/reviews", "VirtualService default/reviews"}
	if d := cmp.Diff(want, keys(s.Snapshot())); d != "" {
		t.Fatalf("objects (-want +got):\n%s", d)
	}
	vs, svc := s.Snapshot().Get(vsKey), s.Snapshot().Get(svcKey)

	// Replacing the pod source leaves the file's objects as they were.
	v := s.Snapshot().Version
	sink.Apply(podSource, []*config.Object{podObject("reviews-1", "10.0.0.2")}, nil)
	snap := s.Snapshot()
	if snap.Version <= v {
		t.Errorf("version %d after replacing the pod source, want > %d", snap.Version, v)
	}
	if got := snap.Get(podKey).Spec.(*corev1.Pod).Status.PodIP; got != "10.0.0.2" {
		t.Errorf("pod IP %s, want the replacement's 10.0.0.2", got)
	}
	if snap.Get(vsKey) != vs || snap.Get(svcKey) != svc {
		t.Error("replacing the pod source replaced the file's objects")
	}

	// Replacing the file (the VirtualService gone) leaves the pod.
	f = config.ParseFile("a.yaml", []byte(goodVS[strings.Index(goodVS, "---\n")+4:]))
	sink.Apply(f.Path, f.Objects, f.Errors)
	want = []string{"Pod default/reviews-1", "Service default/reviews"}
	if d := cmp.Diff(want, keys(s.Snapshot())); d != "" {
		t.Fatalf("after replacing the file (-want +got):\n%s", d)
	}
	if got := s.Snapshot().Get(podKey).Spec.(*corev1.Pod).Status.PodIP; got != "10.0.0.2" {
		t.Errorf("pod IP %s after the file changed, want 10.0.0.2", got)
	}

	// An error naming an object keeps its last good version for any source.
	pod := s.Snapshot().Get(podKey)
	sink.Apply(podSource, nil, []error{&config.Error{Object: "Pod default/reviews-1", Err: errors.New("bad")}})
	if s.Snapshot().Get(podKey) != pod {
		t.Error("an invalid pod replaced its last good version")
	}

	sink.Remove(podSource)
	if d := cmp.Diff([]string{"Service default/reviews"}, keys(s.Snapshot())); d != "" {
		t.Fatalf("after removing the pod source (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"a.yaml"}, s.Sources()); d != "" {
		t.Fatalf("sources after removing the pod source (-want +got):\n%s", d)
	}
	sink.Remove("a.yaml")
	if got := keys(s.Snapshot()); len(got) != 0 {
		t.Fatalf("after removing both: %v", got)
	}
	if got := s.Sources(); len(got) != 0 {
		t.Fatalf("sources after removing both: %v", got)
	}
}

// An object that a file and another source both define is taken from the
// source whose name sorts first, whichever applied first.
func TestDuplicateAcrossSourceKinds(t *testing.T) {
	for _, fileFirst := range []bool{true, false} {
		s := newStore()
		file := config.ParseFile("/cfg/pods.yaml", []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: reviews-1}\nspec: {containers: [{name: app, image: x}]}\n"))
		if file.Errors != nil || len(file.Objects) != 1 {
			t.Fatalf("fixture: %v", file.Errors)
		}
		applyFile := func() { s.Apply(file.Path, file.Objects, file.Errors) }
		applyPod := func() {
			s.Apply("trellis up: pod default/reviews-1", []*config.Object{podObject("reviews-1", "10.0.0.1")}, nil)
		}
		if fileFirst {
			applyFile()
			applyPod()
		} else {
			applyPod()
			applyFile()
		}
		got := s.Snapshot().Get(config.Key{GroupKind: config.Pod, Namespace: "default", Name: "reviews-1"})
		if got.Source.File != "/cfg/pods.yaml" {
			t.Errorf("file applied first %v: kept the copy from %s, want /cfg/pods.yaml's", fileFirst, got.Source.File)
		}
	}
}

package local

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/store"
)

// The pod publisher gives the store one source per pod, named as no file
// is, beside the config files' sources: a pod's readiness change replaces
// only its Pod, and a gone pod's source is removed, while the files'
// objects stay as they were.
func TestPublishPodsAsSources(t *testing.T) {
	st := store.New(slog.New(slog.DiscardHandler))
	st.ApplyFile(config.ParseFile("/cfg/web.yaml", []byte(`apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
`)))
	m := &supervisor{cp: &controlplane.ControlPlane{Store: st}, pods: map[string]*pod{}, published: map[string]bool{}, changed: make(chan struct{}, 1)}
	w := &Workload{Namespace: "default", Name: "web", Pod: PodTemplate{Labels: map[string]string{"app": "web"}, Spec: &corev1.PodSpec{}}}
	p := m.newPod(w, "web-1", netip.MustParseAddr("127.10.0.5"))
	m.pods[p.key()] = p

	podKey := config.Key{GroupKind: config.Pod, Namespace: "default", Name: "web-1"}
	svcKey := config.Key{GroupKind: config.Service, Namespace: "default", Name: "web"}
	readiness := func() corev1.ConditionStatus {
		t.Helper()
		o := st.Snapshot().Get(podKey)
		if o == nil {
			t.Fatal("no Pod default/web-1 in the store")
		}
		if o.Source.File != "trellis up" {
			t.Errorf("the Pod's position reads %q, want \"trellis up\"", o.Source.File)
		}
		return o.Spec.(*corev1.Pod).Status.Conditions[0].Status
	}

	m.publish()
	sources := st.Sources()
	if d := cmp.Diff([]string{"/cfg/web.yaml", "trellis up: pod default/web-1"}, sources); d != "" {
		t.Errorf("sources (-want +got):\n%s", d)
	}
	for _, s := range sources {
		if strings.HasPrefix(s, "trellis-up:") {
			t.Errorf("the publisher still makes a fake file: %s", s)
		}
	}
	if got := readiness(); got != corev1.ConditionFalse {
		t.Errorf("a starting pod is published Ready=%s", got)
	}
	svc := st.Snapshot().Get(svcKey)

	p.mu.Lock()
	p.initDone = true // no containers: ready once initialised
	p.mu.Unlock()
	m.publish()
	if got := readiness(); got != corev1.ConditionTrue {
		t.Errorf("a ready pod is published Ready=%s", got)
	}
	if st.Snapshot().Get(svcKey) != svc {
		t.Error("publishing a pod replaced the file's Service")
	}

	delete(m.pods, p.key())
	m.publish()
	if d := cmp.Diff([]string{"/cfg/web.yaml"}, st.Sources()); d != "" {
		t.Errorf("sources after the pod went (-want +got):\n%s", d)
	}
	if st.Snapshot().Get(podKey) != nil {
		t.Error("a gone pod is still in the store")
	}
	if st.Snapshot().Get(svcKey) != svc {
		t.Error("removing a pod touched the file's Service")
	}
}

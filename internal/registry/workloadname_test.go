package registry

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Telemetry names a pod's workload as istiod does; a Deployment's pods
// must all report the Deployment, not their own names.
func TestWorkloadName(t *testing.T) {
	no := false
	for _, tc := range []struct {
		name   string
		owners []metav1.OwnerReference
		labels map[string]string
		want   string
	}{
		{"bare pod", nil, nil, "pod-x"},
		{"deployment pod", []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "reviews-v1-5d8f7c9b4"}}, map[string]string{"pod-template-hash": "5d8f7c9b4"}, "reviews-v1"},
		{"replicaset without hash label", []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs-1"}}, nil, "rs-1"},
		{"statefulset", []metav1.OwnerReference{{Kind: "StatefulSet", Name: "db"}}, nil, "db"},
		{"cronjob's job", []metav1.OwnerReference{{Kind: "Job", Name: "backup-29012345"}}, nil, "backup"},
		{"plain job", []metav1.OwnerReference{{Kind: "Job", Name: "migrate"}}, nil, "migrate"},
		{"local mode deployment", []metav1.OwnerReference{{Kind: "Deployment", Name: "frontend"}}, nil, "frontend"},
		{"non-controller owner skipped", []metav1.OwnerReference{{Kind: "ConfigMap", Name: "x", Controller: &no}}, nil, "pod-x"},
	} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-x", OwnerReferences: tc.owners, Labels: tc.labels}}
		if got := workloadName(p); got != tc.want {
			t.Errorf("%s: workloadName = %q, want %q", tc.name, got, tc.want)
		}
	}
}

package split

import (
	"encoding/json"
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group is the SMI traffic split API group.
const Group = "split.smi-spec.io"

// Versions lists the API versions understood, oldest first.
var Versions = []string{"v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"}

// TrafficSplit is the canonical, version-independent TrafficSplit.
type TrafficSplit struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              Spec `json:"spec"`
}

// Spec is the canonical TrafficSplit spec.
type Spec struct {
	// Service is the root service clients address (the apex service).
	Service string
	// Backends share the root service's traffic by relative weight.
	Backends []Backend
	// Matches (v1alpha3+) restrict the split to requests matching the named
	// HTTPRouteGroup/TCPRoute objects.
	Matches []corev1.TypedLocalObjectReference
}

// Backend is one destination service and its relative weight.
type Backend struct {
	Service string
	// WeightMilli is the weight in milli-units (v1alpha1 "900m" = 900,
	// v1alpha2+ integer 9 = 9000).
	WeightMilli int64
}

// Wire shapes, exactly as each version accepts them (used for strict
// decoding: unknown fields are rejected).

// V1alpha1 is the v1alpha1 wire form (quantity weights).
type V1alpha1 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Service  string `json:"service"`
		Backends []struct {
			Service string            `json:"service"`
			Weight  resource.Quantity `json:"weight"`
		} `json:"backends"`
	} `json:"spec"`
}

// V1alpha2 is the v1alpha2 wire form (integer weights).
type V1alpha2 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Service  string        `json:"service"`
		Backends []wireBackend `json:"backends"`
	} `json:"spec"`
}

// V1alpha3 is the v1alpha3 and v1alpha4 wire form (integer weights, matches).
type V1alpha3 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Service  string                             `json:"service"`
		Backends []wireBackend                      `json:"backends"`
		Matches  []corev1.TypedLocalObjectReference `json:"matches,omitempty"`
	} `json:"spec"`
}

type wireBackend struct {
	Service string `json:"service"`
	Weight  int64  `json:"weight"`
}

// WireType returns the Go type a version's documents decode into, for
// strict field checking.
func WireType(version string) (reflect.Type, bool) {
	switch version {
	case "v1alpha1":
		return reflect.TypeFor[V1alpha1](), true
	case "v1alpha2":
		return reflect.TypeFor[V1alpha2](), true
	case "v1alpha3", "v1alpha4":
		return reflect.TypeFor[V1alpha3](), true
	}
	return nil, false
}

// Decode turns one JSON document of the given version into the canonical form.
func Decode(version string, doc []byte) (*TrafficSplit, error) {
	out := &TrafficSplit{}
	switch version {
	case "v1alpha1":
		var w V1alpha1
		if err := json.Unmarshal(doc, &w); err != nil {
			return nil, err
		}
		out.TypeMeta, out.ObjectMeta = w.TypeMeta, w.ObjectMeta
		out.Spec.Service = w.Spec.Service
		for _, b := range w.Spec.Backends {
			out.Spec.Backends = append(out.Spec.Backends, Backend{Service: b.Service, WeightMilli: b.Weight.MilliValue()})
		}
	case "v1alpha2":
		var w V1alpha2
		if err := json.Unmarshal(doc, &w); err != nil {
			return nil, err
		}
		out.TypeMeta, out.ObjectMeta = w.TypeMeta, w.ObjectMeta
		out.Spec.Service = w.Spec.Service
		out.Spec.Backends = milli(w.Spec.Backends)
	case "v1alpha3", "v1alpha4":
		var w V1alpha3
		if err := json.Unmarshal(doc, &w); err != nil {
			return nil, err
		}
		out.TypeMeta, out.ObjectMeta = w.TypeMeta, w.ObjectMeta
		out.Spec.Service = w.Spec.Service
		out.Spec.Backends = milli(w.Spec.Backends)
		out.Spec.Matches = w.Spec.Matches
	default:
		return nil, fmt.Errorf("unknown TrafficSplit version %q: use one of %v", version, Versions)
	}
	return out, nil
}

func milli(in []wireBackend) []Backend {
	out := make([]Backend, 0, len(in))
	for _, b := range in {
		out = append(out, Backend{Service: b.Service, WeightMilli: b.Weight * 1000})
	}
	return out
}
